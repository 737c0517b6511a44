#version 330 core
// An RGBA texture (the rendered view blitted to a window), alpha as stored.
uniform sampler2D u_texture;

in vec2 v_uv;
out vec4 f_color;

void main() {
    f_color = texture(u_texture, v_uv);
}
