"""The GLFW window under a private Xvfb server: keys, close button, and the pixels on screen."""
from __future__ import annotations

import ctypes
import ctypes.util
import time

import glfw
import numpy as np
import pytest
import trimesh

from engine.errors import UserError
from realtime.record import FrameRecord, HeadPose
from realtime.render import RenderOptions, Renderer
from realtime.window import Action, Window

W, H = 320, 240
GL_BACK, GL_PACK_ALIGNMENT, GL_RGB, GL_UNSIGNED_BYTE = 0x0405, 0x0D05, 0x1907, 0x1401


@pytest.fixture
def window(xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with Window.open(W, H, "facemesh-live test") as win:
        assert win.ctx.error == "GL_NO_ERROR"
        yield win
        assert win.ctx.error == "GL_NO_ERROR", "the test left a GL error in the window's context"


@pytest.fixture
def frame() -> FrameRecord:
    m = trimesh.creation.icosphere(subdivisions=3, radius=60.0)
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    pose = HeadPose(rotation=np.eye(3, dtype=np.float32), translation_mm=np.zeros(3, dtype=np.float32),
                    scale_px_per_mm=1.0, center_px=np.array([200.0, 100.0], dtype=np.float32))
    return FrameRecord(0, 0.0, 0, image=image, face_found=True, pose=pose, vertices=m.vertices.astype(np.float32),
                       landmarks_px=None), m.faces


def _read_default_framebuffer(win: Window) -> np.ndarray:
    """glReadPixels of the window's back buffer → [h,w,3] uint8 BGR, top row first."""
    lib = ctypes.CDLL(ctypes.util.find_library("GL") or "libGL.so.1")
    w, h = win.framebuffer_size
    win.ctx.screen.use()
    buf = (ctypes.c_ubyte * (w * h * 3))()
    lib.glReadBuffer(GL_BACK)
    lib.glPixelStorei(GL_PACK_ALIGNMENT, 1)
    lib.glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE, buf)
    rgb = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    return np.ascontiguousarray(rgb[::-1, :, ::-1])


def test_no_display_is_a_user_error_that_suggests_headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="no display.*--headless"):
        Window.open(W, H)


def test_unreachable_display_is_a_user_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":987")  # nothing listens there
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="--headless") as info:
        Window.open(W, H)
    assert "\n" not in str(info.value)


def test_window_shows_the_rendered_view(window, frame):
    record, faces = frame
    assert window.framebuffer_size == (W, H)
    r = Renderer(window.ctx, W, H, faces)
    try:
        r.render(record, RenderOptions(show_hud=True, hud_lines=["60.0 FPS"]))
        expected = r.read_rgb()
        window.draw(r)
        on_screen = _read_default_framebuffer(window)
        window.swap()
        window.present(r)  # draw + swap again: no error
    finally:
        r.release()
    np.testing.assert_array_equal(on_screen, expected)
    assert not np.array_equal(expected, record.image), "the head and HUD are part of what is shown"


def test_resized_window_is_letterboxed(window, frame):
    record, faces = frame
    glfw.set_window_size(window.handle, 2 * W, H)
    deadline = time.perf_counter() + 5.0
    while window.framebuffer_size != (2 * W, H) and time.perf_counter() < deadline:
        window.poll()
        time.sleep(0.01)
    assert window.framebuffer_size == (2 * W, H)
    r = Renderer(window.ctx, W, H, faces)
    try:
        r.render(record, RenderOptions(show_hud=False))
        expected = r.read_rgb()
        window.present(r)  # Mesa resizes the window's back buffer at a swap
        window.draw(r)
        on_screen = _read_default_framebuffer(window)
    finally:
        r.release()
    assert (on_screen[:, : W // 2] == 0).all() and (on_screen[:, W // 2 + W:] == 0).all(), "black side bars"
    centre = on_screen[:, W // 2: W // 2 + W].astype(np.int32)
    assert np.abs(centre - expected).max() <= 2


def test_keys_become_actions_through_the_registered_callback(window):
    callback = glfw.set_key_callback(window.handle, None)  # returns the one the window registered
    glfw.set_key_callback(window.handle, callback)
    assert callback is not None
    presses = [glfw.KEY_W, glfw.KEY_M, glfw.KEY_C, glfw.KEY_S, glfw.KEY_SPACE, glfw.KEY_H, glfw.KEY_Q, glfw.KEY_ESCAPE]
    for key in presses:
        callback(window.handle, key, 0, glfw.PRESS, 0)
    callback(window.handle, glfw.KEY_W, 0, glfw.RELEASE, 0)  # releases and repeats do nothing
    callback(window.handle, glfw.KEY_W, 0, glfw.REPEAT, 0)
    callback(window.handle, glfw.KEY_Z, 0, glfw.PRESS, 0)  # unmapped key
    assert window.poll() == [Action.TOGGLE_WIREFRAME, Action.TOGGLE_MIRROR, Action.CALIBRATE, Action.SCREENSHOT,
                             Action.PAUSE, Action.HELP, Action.QUIT, Action.QUIT]
    assert window.poll() == []
    assert Action.PAUSE.value == "pause" and Action.PAUSE == "pause"  # the app compares names


def test_close_button_quits_once_and_close_is_idempotent(xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    win = Window.open(W, H)
    try:
        assert win.poll() == []
        glfw.set_window_should_close(win.handle, True)
        assert win.poll() == [Action.QUIT]
        assert win.poll() == []
    finally:
        win.close()
    win.close()
    assert win.poll() == [Action.QUIT]
