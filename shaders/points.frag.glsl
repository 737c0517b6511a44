#version 330 core
uniform vec3 u_color;
uniform vec3 u_highlight_color;

flat in int v_highlight;
out vec4 f_color;

void main() {
    f_color = vec4(v_highlight == 1 ? u_highlight_color : u_color, 1.0);
}
