#version 330 core
// The head's pixels: the per-vertex lit colour (head.vert.glsl); with CAPS (the caps closing the
// head's holes) fading from the skin to the dark cap colour towards each cap's centre.
// u_mode 0: lit surface; 1: flat colour u_color (wireframe lines).
uniform int u_mode;
uniform vec3 u_color;

in vec3 v_rgb;
#ifdef CAPS
in vec3 v_cap_rgb;
in float v_cap;
#endif
out vec4 f_color;

void main() {
    if (u_mode == 1) {
        f_color = vec4(u_color, 1.0);
        return;
    }
#ifdef CAPS
    f_color = vec4(mix(v_rgb, v_cap_rgb, smoothstep(0.0, 0.6, v_cap)), 1.0);
#else
    f_color = vec4(v_rgb, 1.0);
#endif
}
