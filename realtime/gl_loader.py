"""OpenGL access beyond moderngl's: the offscreen EGL context, and direct calls into the system's GL
library for the entry points moderngl does not expose (glFlush, glFinish, glBlitFramebuffer with
rectangles). Every call acts on whichever context is current; without the library the calls report
False and callers skip them or fall back.
"""
from __future__ import annotations

import ctypes
import functools

import moderngl

from engine.errors import UserError

GL_LIBRARIES = ("libOpenGL.so.0", "libGL.so.1", "libGL.so")
GL_READ_FRAMEBUFFER, GL_COLOR_BUFFER_BIT, GL_NEAREST, GL_LINEAR = 0x8CA8, 0x4000, 0x2600, 0x2601  # for gl_call


@functools.lru_cache(maxsize=2)
def gl_library(releases_gil: bool = False) -> ctypes.CDLL | None:
    """The system's GL library, for the calls moderngl does not expose (glFlush, glFinish, and
    glBlitFramebuffer with rectangles), or None where none can be loaded (then they are skipped or
    replaced). Through GLVND (libOpenGL) calls act on whichever context is current. As a PyDLL
    (default) calls keep the GIL, right for calls that return at once; as a CDLL (releases_gil) ctypes
    releases the GIL around them, for calls that wait, so the tracker's thread runs on meanwhile."""
    loader = ctypes.CDLL if releases_gil else ctypes.PyDLL
    for name in GL_LIBRARIES:
        try:
            return loader(name)
        except OSError:
            continue
    return None


def gl_call(name: str, *args: int, releases_gil: bool = False) -> bool:
    """Call the GL entry point `name` (integer arguments) on the current context; False if unavailable."""
    library = gl_library(releases_gil)
    function = getattr(library, name, None) if library is not None else None
    if function is None:
        return False
    function(*args)
    return True


def gl_finish() -> None:
    """glFinish on the current context with the GIL released (skipped without the library: the
    read-back that follows then waits inside moderngl instead)."""
    gl_call("glFinish", releases_gil=True)


def gl_flush() -> None:
    """glFlush on the current context: queued GL work starts now, nothing waits (a no-op without the library)."""
    gl_call("glFlush")


def create_offscreen_context() -> moderngl.Context:
    """A standalone OpenGL ≥ 3.3 context through EGL (no display needed); UserError if impossible."""
    try:
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # moderngl/glcontext raise plain Exception subclasses for missing libraries
        raise UserError(f"cannot create an offscreen OpenGL context through EGL ({exc}); install Mesa EGL "
                        "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) or use --no-render") from None
    if ctx.version_code < 330:
        ctx.release()
        raise UserError(f"the EGL OpenGL context is version {ctx.version_code}, 330 is needed; update Mesa")
    return ctx
