#version 330 core
// The dense head. in_position: head frame, millimetres; in_normal: per-vertex normal, head frame.
// u_mvp maps head-frame mm straight to clip space of the current viewport (scaled orthographic camera
// built on the CPU from the tracked pose); u_normal_mat maps head-frame directions to the display's
// view space (x right, y up, z towards the viewer, mirror included).
uniform mat4 u_mvp;
uniform mat3 u_normal_mat;
uniform float u_depth_bias;  // NDC units pulled towards the viewer (wireframe lines over the depth pre-pass)

in vec3 in_position;
in vec3 in_normal;
in float in_cap;  // 1 at the centre of a hole's cap, 0 on the surface

out vec3 v_normal;
out float v_cap;

void main() {
    gl_Position = u_mvp * vec4(in_position, 1.0);
    gl_Position.z -= u_depth_bias * gl_Position.w;
    v_normal = u_normal_mat * in_normal;
    v_cap = in_cap;
}
