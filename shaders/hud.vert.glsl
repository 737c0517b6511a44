#version 330 core
// HUD rectangles (its box, or one glyph each) as two triangles apiece, in view pixels from the top-left:
// the renderer's framebuffer is stored top row first, so a pixel row is also GL window y and NDC is
// simply 2 * pixel / size - 1.
uniform vec2 u_view_size;  // framebuffer (width, height), pixels

in ivec2 in_pixel;         // a rectangle corner, pixels
in ivec2 in_texel_offset;  // atlas texel minus framebuffer pixel, the same for the whole rectangle

flat out ivec2 v_texel_offset;

void main() {
    gl_Position = vec4(2.0 * vec2(in_pixel) / u_view_size - 1.0, 0.0, 1.0);
    v_texel_offset = in_texel_offset;
}
