#version 330 core
// The dense head, lit per vertex. in_position: head frame, millimetres; in_normal: per-vertex normal,
// head frame. u_mvp maps head-frame mm straight to clip space of the current viewport (scaled
// orthographic camera built on the CPU from the tracked pose); u_normal_mat maps head-frame directions
// to the display's view space (x right, y up, z towards the viewer, mirror included).
//
// Two-light Blinn-Phong skin in view space (orthographic view: the eye looks down -z), evaluated here
// rather than per fragment: the 3,260-vertex head's triangles are a few pixels across at the view sizes
// used, so the picture matches per-pixel lighting to within a few grey levels at creases, while the
// fragment work (most of a frame on a CPU rasteriser such as llvmpipe) drops to an interpolation.
//
// Compiled twice (realtime/render.py): as is for the surface, and with CAPS defined for the caps that
// close the head's holes (eyes, mouth, neck), whose vertices are also lit with the cap albedo and carry
// in_cap (1 at a cap's centre, 0 on its rim) so the fragments can fade to dark towards the centre.
uniform mat4 u_mvp;
uniform mat3 u_normal_mat;
uniform float u_depth_bias;  // NDC units pulled towards the viewer (wireframe lines over the depth pre-pass)
uniform bool u_two_sided;    // no culling (inconsistently wound mesh): light whichever side faces the eye
uniform vec3 u_albedo;

in vec3 in_position;
in vec3 in_normal;

out vec3 v_rgb;  // display colour (gamma applied) with the skin albedo

#ifdef CAPS
uniform vec3 u_cap_albedo;
in float in_cap;
out vec3 v_cap_rgb;  // the same light with the cap albedo
out float v_cap;
#endif

const vec3 KEY_DIR = normalize(vec3(-0.45, 0.55, 1.0));
const vec3 KEY_RGB = vec3(1.00, 0.95, 0.88);
const vec3 FILL_DIR = normalize(vec3(0.70, -0.15, 0.55));
const vec3 FILL_RGB = vec3(0.35, 0.40, 0.50);
const vec3 AMBIENT = vec3(0.14, 0.13, 0.13);
const vec3 VIEW_DIR = vec3(0.0, 0.0, 1.0);
const float SPECULAR = 0.18;
const float SHININESS = 32.0;
const float DISPLAY_GAMMA = 1.4;

float specular(vec3 n, vec3 dir) {
    return pow(max(dot(n, normalize(dir + VIEW_DIR)), 0.0), SHININESS) * SPECULAR;
}

vec3 display(vec3 rgb) {
    return pow(clamp(rgb, 0.0, 1.0), vec3(1.0 / DISPLAY_GAMMA));
}

void main() {
    gl_Position = u_mvp * vec4(in_position, 1.0);
    gl_Position.z -= u_depth_bias * gl_Position.w;
    vec3 n = normalize(u_normal_mat * in_normal);
    if (u_two_sided && n.z < 0.0) n = -n;
    vec3 diffuse = AMBIENT + max(dot(n, KEY_DIR), 0.0) * KEY_RGB + max(dot(n, FILL_DIR), 0.0) * FILL_RGB;
    vec3 spec = specular(n, KEY_DIR) * KEY_RGB + specular(n, FILL_DIR) * FILL_RGB;
    v_rgb = display(u_albedo * diffuse + spec);
#ifdef CAPS
    v_cap_rgb = display(u_cap_albedo * diffuse + spec);
    v_cap = in_cap;
#endif
}
