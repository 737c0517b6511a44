"""The GLFW window: an OpenGL 3.3 core context for the renderer, key actions, presenting frames.

`Window.open(...)` needs a display (X11 or Wayland); without one it raises a one-line `UserError`
that suggests `--headless`. The window never draws by itself: `present(renderer)` copies the
renderer's framebuffer to the screen (letterboxed if the window was resized) and swaps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from enum import Enum

import glfw
import moderngl

from engine.errors import UserError
from realtime.render import Renderer
from realtime.view_transforms import fit_rect

log = logging.getLogger(__name__)

NO_DISPLAY_HINT = "run with --headless to render offscreen (add --record out.mp4 to keep the video)"


class Action(str, Enum):
    """What a key (or the close button) asks the app to do. The value is the action's name."""

    QUIT = "quit"
    TOGGLE_WIREFRAME = "toggle_wireframe"
    TOGGLE_MIRROR = "toggle_mirror"
    CALIBRATE = "calibrate"
    SCREENSHOT = "screenshot"
    PAUSE = "pause"
    HELP = "help"


KEY_ACTIONS: dict[int, Action] = {
    glfw.KEY_Q: Action.QUIT,
    glfw.KEY_ESCAPE: Action.QUIT,
    glfw.KEY_W: Action.TOGGLE_WIREFRAME,
    glfw.KEY_M: Action.TOGGLE_MIRROR,
    glfw.KEY_C: Action.CALIBRATE,
    glfw.KEY_S: Action.SCREENSHOT,
    glfw.KEY_SPACE: Action.PAUSE,
    glfw.KEY_H: Action.HELP,
}


def display_available() -> bool:
    """Whether a window system is advertised (DISPLAY or WAYLAND_DISPLAY; always True off Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def release_current_egl_context() -> bool:
    """Make no EGL context current on this thread; True if one was.

    With GLVND, making a GLX context current on a thread that has an EGL context current fails with
    an X BadAccess error, and Xlib's default handler then ends the process. An offscreen renderer
    created earlier in the same thread (tests, tools) would cause exactly that.
    """
    name = ctypes.util.find_library("EGL")
    if name is None:
        return False
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return False
    egl.eglGetCurrentContext.restype = ctypes.c_void_p
    egl.eglGetCurrentDisplay.restype = ctypes.c_void_p
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    egl.eglMakeCurrent.restype = ctypes.c_uint
    if not egl.eglGetCurrentContext():
        return False
    egl.eglMakeCurrent(egl.eglGetCurrentDisplay(), None, None, None)
    log.debug("released the EGL context current on this thread before opening a GLX window")
    return True


class Window:
    """One GLFW window with a current OpenGL ≥ 3.3 core context (`ctx`). Use `Window.open`."""

    def __init__(self, handle, ctx: moderngl.Context, previous_error_callback, errors: list[str]) -> None:
        self._handle = handle
        self.ctx = ctx
        self._previous_error_callback = previous_error_callback
        self._errors = errors
        self._pending: list[Action] = []
        self._close_reported = False
        self._closed = False
        glfw.set_key_callback(handle, self._on_key)
        glfw.set_window_close_callback(handle, self._on_close)

    @property
    def handle(self):
        """The GLFW window handle, for code that drives GLFW directly (size, callbacks, should-close)."""
        return self._handle

    @classmethod
    def open(cls, width: int, height: int, title: str = "facemesh-live", *, visible: bool = True) -> "Window":
        """Open a window of (width, height) screen units; UserError when there is no usable display."""
        if not display_available():
            raise UserError(f"no display found (DISPLAY is not set); {NO_DISPLAY_HINT}")
        errors: list[str] = []

        def on_error(code: int, description: bytes) -> None:
            text = description.decode("utf-8", "replace") if isinstance(description, bytes) else str(description)
            errors.append(f"{text} (GLFW error {code:#x})")
            log.debug("GLFW error %#x: %s", code, text)

        previous = glfw.set_error_callback(on_error)
        if not glfw.init():
            glfw.set_error_callback(previous)
            why = errors[-1] if errors else "glfwInit failed"
            raise UserError(f"no display found (GLFW cannot open a window: {why}); {NO_DISPLAY_HINT}")
        try:
            glfw.default_window_hints()
            glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
            glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
            glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
            glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
            glfw.window_hint(glfw.RESIZABLE, True)
            glfw.window_hint(glfw.VISIBLE, bool(visible))
            release_current_egl_context()  # before create_window: GLFW makes the new context current in it
            handle = glfw.create_window(int(width), int(height), title, None, None)
            if not handle:
                why = errors[-1] if errors else "glfwCreateWindow failed"
                raise UserError(f"GLFW cannot open a {width}x{height} OpenGL 3.3 window ({why}); {NO_DISPLAY_HINT}")
            glfw.make_context_current(handle)
            glfw.swap_interval(0)  # never block the pipeline on vsync
            try:
                ctx = moderngl.create_context(require=330)
            except Exception as exc:  # moderngl raises a plain Exception for a missing/old GL
                glfw.destroy_window(handle)
                raise UserError(f"the window's OpenGL context is unusable ({exc}); {NO_DISPLAY_HINT}") from None
        except BaseException:
            glfw.terminate()
            glfw.set_error_callback(previous)
            raise
        return cls(handle, ctx, previous, errors)

    # -- input ------------------------------------------------------------------------------

    def _on_key(self, handle, key: int, scancode: int, action: int, mods: int) -> None:
        """GLFW key callback: a key press (not repeat/release) queues its Action."""
        del handle, scancode, mods
        if action == glfw.PRESS and key in KEY_ACTIONS:
            self._pending.append(KEY_ACTIONS[key])

    def _on_close(self, handle) -> None:
        """GLFW close callback (the window's close button)."""
        del handle
        if not self._close_reported:
            self._close_reported = True
            self._pending.append(Action.QUIT)

    def poll(self) -> list[Action]:
        """Process window events; the actions since the last poll, in order (close button → QUIT)."""
        if self._closed:
            return [Action.QUIT]
        glfw.poll_events()
        if glfw.window_should_close(self._handle) and not self._close_reported:
            self._on_close(self._handle)
        out, self._pending = self._pending, []
        return out

    # -- output -----------------------------------------------------------------------------

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        """(width, height) of the window's default framebuffer in pixels."""
        w, h = glfw.get_framebuffer_size(self._handle)
        return int(w), int(h)

    def draw(self, renderer: Renderer) -> None:
        """Copy the renderer's view into the back buffer, letterboxed to the current window size."""
        fw, fh = self.framebuffer_size
        if fw == 0 or fh == 0:  # minimised
            return
        screen = self.ctx.screen
        rect = fit_rect((renderer.width, renderer.height), (0, 0, fw, fh))
        if rect != (0, 0, fw, fh):
            screen.use()
            self.ctx.viewport = (0, 0, fw, fh)
            screen.clear(0.0, 0.0, 0.0, 1.0)
        renderer.blit_to(screen, rect)

    def swap(self) -> None:
        """Show the back buffer."""
        glfw.swap_buffers(self._handle)

    def present(self, renderer: Renderer) -> None:
        """`draw(renderer)` then `swap()`."""
        if self._closed:
            return
        self.draw(renderer)
        self.swap()

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the GL context, destroy the window and shut GLFW down. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.ctx.release()
        glfw.destroy_window(self._handle)
        glfw.terminate()
        glfw.set_error_callback(self._previous_error_callback)

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
