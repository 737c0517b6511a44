#version 330 core
// A textured rectangle from gl_VertexID alone (4 vertices, triangle strip; no buffers).
// u_rect: (x_left, y_top, x_right, y_bottom) in NDC; u_uv_rect: texture coordinates at those corners.
uniform vec4 u_rect;
uniform vec4 u_uv_rect;

out vec2 v_uv;

void main() {
    vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));  // (0,0) top-left ... (1,1)
    gl_Position = vec4(mix(u_rect.xy, u_rect.zw, corner), 0.0, 1.0);
    v_uv = mix(u_uv_rect.xy, u_uv_rect.zw, corner);
}
