"""Shared fixtures: a headless OpenGL context (EGL) checked for GL errors, and a private Xvfb display."""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess

import pytest


@pytest.fixture(scope="session")
def gl_context():
    """One standalone EGL OpenGL context for the session (skips when EGL/Mesa is unavailable)."""
    moderngl = pytest.importorskip("moderngl")
    try:
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # glcontext raises plain Exception when libEGL/a driver is missing
        pytest.skip(f"no EGL OpenGL context here: {exc}")
    yield ctx
    ctx.release()


@pytest.fixture
def ctx(gl_context):
    """The session's GL context, current, with no GL error pending before the test nor left after it."""
    with gl_context:  # current on this thread again (a window test may have made another one current)
        assert gl_context.error == "GL_NO_ERROR", "a GL error was pending before the test"
        yield gl_context
        assert gl_context.error == "GL_NO_ERROR", "the test left a GL error"


def _die_with_parent() -> None:
    """In the child before exec: Linux sends SIGTERM when the test process dies, even by a hard exit."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@pytest.fixture(scope="session")
def xvfb_display():
    """A private Xvfb server (display number chosen by Xvfb itself); yields e.g. ':5'."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    # -noreset: without it the server resets when the last client leaves and the next test races it.
    command = [binary, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset"]
    proc = subprocess.Popen(command, pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent if os.uname().sysname == "Linux" else None)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20.0)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.skip("Xvfb did not start within 20 s")
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
