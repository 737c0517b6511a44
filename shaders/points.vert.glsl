#version 330 core
// Tracker landmarks. in_position.xy: image pixels (x right, y down); z is ignored.
// u_image_to_ndc: (sx, sy, ox, oy) with ndc = pixel * (sx, sy) + (ox, oy) (mirror folded into sx, ox).
uniform vec4 u_image_to_ndc;
uniform int u_highlight_from;  // landmarks with this index or above (irises) get the second colour

in vec3 in_position;
flat out int v_highlight;

void main() {
    gl_Position = vec4(in_position.xy * u_image_to_ndc.xy + u_image_to_ndc.zw, 0.0, 1.0);
    v_highlight = gl_VertexID >= u_highlight_from ? 1 : 0;
}
