#version 330 core
// The HUD: a translucent black box, then white text from a coverage atlas (texel for pixel, no filtering).
// Output is premultiplied (blend ONE, ONE_MINUS_SRC_ALPHA). The text pass reproduces drawing the text
// into the box first and blending that RGBA image once: over the box, colour a * (A + (1 - A) * a) with
// alpha a, for coverage a and box alpha A.
uniform sampler2D u_atlas;  // one channel: text coverage
uniform bool u_box;         // true: the box pass; false: the text pass
uniform float u_box_alpha;

flat in ivec2 v_texel_offset;
out vec4 f_color;

void main() {
    if (u_box) {
        f_color = vec4(0.0, 0.0, 0.0, u_box_alpha);
        return;
    }
    float a = texelFetch(u_atlas, ivec2(gl_FragCoord.xy) + v_texel_offset, 0).r;
    f_color = vec4(vec3(a * (u_box_alpha + (1.0 - u_box_alpha) * a)), a);
}
