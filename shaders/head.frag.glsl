#version 330 core
// Two-light Blinn-Phong skin shading in view space (orthographic view: the eye looks down -z).
// u_mode 0: lit surface; 1: flat colour u_color (wireframe lines). Back faces are normally culled; the
// head's openings (eyes, mouth, neck) are closed by caps whose albedo fades to u_cap_albedo at the centre.
uniform int u_mode;
uniform bool u_two_sided;  // no culling (inconsistently wound mesh): light whichever side faces the eye
uniform vec3 u_color;
uniform vec3 u_albedo;
uniform vec3 u_cap_albedo;

in vec3 v_normal;
in float v_cap;
out vec4 f_color;

const vec3 KEY_DIR = normalize(vec3(-0.45, 0.55, 1.0));
const vec3 KEY_RGB = vec3(1.00, 0.95, 0.88);
const vec3 FILL_DIR = normalize(vec3(0.70, -0.15, 0.55));
const vec3 FILL_RGB = vec3(0.35, 0.40, 0.50);
const vec3 AMBIENT = vec3(0.14, 0.13, 0.13);
const vec3 VIEW_DIR = vec3(0.0, 0.0, 1.0);

vec3 light(vec3 n, vec3 dir, vec3 rgb, vec3 albedo) {
    float diffuse = max(dot(n, dir), 0.0);
    vec3 h = normalize(dir + VIEW_DIR);
    float spec = pow(max(dot(n, h), 0.0), 32.0) * 0.18;
    return rgb * (diffuse * albedo + vec3(spec));
}

void main() {
    if (u_mode == 1) {
        f_color = vec4(u_color, 1.0);
        return;
    }
    vec3 n = normalize(v_normal);
    if (u_two_sided && n.z < 0.0) n = -n;
    vec3 albedo = mix(u_albedo, u_cap_albedo, smoothstep(0.0, 0.6, v_cap));
    vec3 rgb = AMBIENT * albedo + light(n, KEY_DIR, KEY_RGB, albedo) + light(n, FILL_DIR, FILL_RGB, albedo);
    f_color = vec4(pow(clamp(rgb, 0.0, 1.0), vec3(1.0 / 1.4)), 1.0);
}
