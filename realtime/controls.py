"""The window's side of the live app: what the heads-up display shows, and the keys.

`HudState` is the HUD's state, updated once per frame from the record (the drawing is
`realtime/render.py`'s); `Controller` turns the window's key actions into changes of the render
options, the calibration and the pause, between frames on the main thread.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from realtime.record import FrameRecord

log = logging.getLogger("facemesh")

HELP_LINES = ["q/Esc quit   w wireframe   m mirror   c calibrate neutral",
              "s screenshot   space pause   h help"]


@dataclass
class HudState:
    """What the heads-up display shows; updated once per frame from the record."""

    fps: float = 0.0
    backend: str = ""
    show_help: bool = False
    paused: bool = False
    message: str = ""
    message_until: float = 0.0
    last_render_ms: float | None = None  # the previous frame's render time (this frame's is not known yet)
    _last_t: float | None = field(default=None, repr=False)

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last_t is not None:
            dt = now - self._last_t
            inst = 1.0 / dt if dt > 0 else 0.0
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_t = now

    def flash(self, text: str, seconds: float = 2.0) -> None:
        self.message, self.message_until = text, time.perf_counter() + seconds

    def lines(self, record: FrameRecord) -> list[str]:
        stages = "  ".join(f"{k} {v:.1f}" for k, v in record.timings_ms.items() if k != "render")
        if self.last_render_ms is not None:
            stages += f"  render {self.last_render_ms:.1f}"
        fps = f"{self.fps:5.1f}" if self.fps > 0 else "  -- "  # nothing measured before the second frame
        out = [f"{fps} FPS   {self.backend}", f"ms: {stages}"]
        if self.paused:  # the frame's status (no face, camera lost) is added by the renderer: realtime/hud.py
            out.append("paused (space)")
        if self.message and time.perf_counter() < self.message_until:
            out.append(self.message)
        if self.show_help:
            out.extend(HELP_LINES)
        return out


class Controller:
    """Key actions from the window, between frames."""

    def __init__(self, screenshot_dir: Path, hud: HudState, decode, window, renderer, render_stage=None) -> None:
        self.screenshot_dir, self.hud, self.decode = Path(screenshot_dir), hud, decode
        self.window, self.renderer = window, renderer
        self.render_stage = render_stage
        self.quit = False

    def should_stop(self) -> bool:
        """Called by the pipeline on the main thread before each frame: keys, then waits while paused."""
        self._poll()
        self.wait_while_paused()
        return self.quit

    def wait_while_paused(self) -> None:
        while self.hud.paused and not self.quit:
            if self.window is not None and self.render_stage is not None:
                self.window.present(self.renderer)
            time.sleep(0.02)
            self._poll()

    def _poll(self) -> None:
        if self.window is None:
            return
        for action in self.window.poll():
            name = getattr(action, "value", action)
            if name == "quit":
                self.quit = True
            elif name == "toggle_wireframe" and self.render_stage:
                self.render_stage.options.wireframe = not self.render_stage.options.wireframe
            elif name == "toggle_mirror" and self.render_stage:
                self.render_stage.options.mirror = not self.render_stage.options.mirror
            elif name == "calibrate":
                self.decode.start_calibration(30)
                self.hud.flash("calibrating neutral: keep a relaxed face")
            elif name == "screenshot" and self.renderer is not None:
                self._screenshot()
            elif name == "pause":
                self.hud.paused = not self.hud.paused
            elif name == "help":
                self.hud.show_help = not self.hud.show_help

    def _screenshot(self) -> None:
        import cv2

        folder = self.screenshot_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("facemesh-%Y%m%d-%H%M%S.png")
        cv2.imwrite(str(path), self.renderer.read_rgb())
        self.hud.flash(f"saved {path}")
        log.info("screenshot saved to %s", path)
