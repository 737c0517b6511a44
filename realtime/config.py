"""The live app's configuration: typed, frozen, built once from the command line.

`RunConfig.from_args(namespace)` turns the parsed options of `realtime/run_args.py` (checked first
by `realtime/options.py`) into four groups — source, model, smoothing, output — that the app, the
benchmark, the demo strip and the batch workers pass to `build_stages`. A variant of a run is
`dataclasses.replace` of a group, never a hand-made Namespace.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from: exactly one of camera, video, images, demo (checked by `open_source`)."""

    camera: int | None = None
    video: Path | None = None
    images: Path | None = None
    demo: bool = False
    width: int = 640  # camera capture request, px
    height: int = 480
    fps: float = 30.0  # camera capture request; the nominal rate of an image folder
    mirror: bool = False
    camera_timeout_s: float | None = None  # None: the app's default (`camera_timeout`)
    realtime: bool = True  # pace a file at its own rate (False: as fast as possible)
    loop: bool = False

    def describe(self) -> dict:
        """{"kind": camera|video|images|demo, "index" or "path"} for a take's metadata."""
        if self.camera is not None:
            return {"kind": "camera", "index": self.camera}
        if self.video is not None:
            return {"kind": "video", "path": str(Path(self.video).resolve())}
        if self.images is not None:
            return {"kind": "images", "path": str(Path(self.images).resolve())}
        return {"kind": "demo"} if self.demo else {"kind": "unknown"}


@dataclass(frozen=True)
class ModelConfig:
    """The face model and its front end."""

    backend: str = "auto"
    model: Path = Path(__file__).resolve().parent.parent / "models" / "face_model.pt"
    decoder_threads: int | None = None  # None: 1 when overlapped, else the back-end's default
    identity: str = "user"  # user | avatar
    calibrate: int = 0  # frames of relaxed face taken as the neutral at the start
    expressions: str = "retarget"  # retarget | direct


@dataclass(frozen=True)
class SmoothingConfig:
    """One Euro smoothing (`realtime/smoothing.py`); None = the module's default."""

    enabled: bool = True
    min_cutoff_hz: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class OutputConfig:
    """What the run produces and how the loop runs."""

    render: bool = True
    headless: bool = False
    record: Path | None = None
    layout: str = "side"
    wireframe: bool = False
    msaa: int | None = None
    landmarks: bool = False
    view_size: str | None = None
    frames: int | None = None
    overlap: bool = True
    export: Path | None = None
    overwrite: bool = False
    stats: Path | None = None
    screenshot_dir: Path = Path("out")
    osc: tuple[str, ...] = ()
    osc_mtu: int = 1400
    osc_mesh_every: int = 1
    faceosc_raw: bool = False


@dataclass(frozen=True)
class RunConfig:
    """One run of the pipeline. argv: the command line recorded in a take's metadata (None: this
    process's own)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    argv: tuple[str, ...] | None = None

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "RunConfig":
        """From the run options' Namespace (`realtime.run_args`); options a parser lacks take their defaults."""
        g = lambda name, default=None: getattr(a, name, default)  # noqa: E731
        return cls(
            source=SourceConfig(camera=g("camera"), video=g("video"), images=g("images"), demo=bool(g("demo", False)),
                                width=g("width", 640), height=g("height", 480), fps=g("fps", 30.0),
                                mirror=bool(g("mirror", False)), camera_timeout_s=g("camera_timeout"),
                                realtime=not g("as_fast_as_possible", False), loop=bool(g("loop", False))),
            model=ModelConfig(backend=g("backend", "auto"), model=Path(g("model", ModelConfig.model)),
                              decoder_threads=g("decoder_threads"), identity=g("identity", "user"),
                              calibrate=int(g("calibrate", 0) or 0), expressions=g("expressions", "retarget")),
            smoothing=SmoothingConfig(enabled=not g("no_smooth", False), min_cutoff_hz=g("smooth_mincutoff"),
                                      beta=g("smooth_beta")),
            output=OutputConfig(render=not g("no_render", False), headless=bool(g("headless", False)),
                                record=g("record"), layout=g("layout", "side"), wireframe=bool(g("wireframe", False)),
                                msaa=g("msaa"), landmarks=bool(g("landmarks", False)), view_size=g("view_size"),
                                frames=g("frames"), overlap=not g("no_overlap", False), export=g("export"),
                                overwrite=bool(g("overwrite", False)), stats=g("stats"),
                                screenshot_dir=Path(g("screenshot_dir", "out")), osc=tuple(g("osc", ()) or ()),
                                osc_mtu=g("osc_mtu", 1400), osc_mesh_every=g("osc_mesh_every", 1),
                                faceosc_raw=bool(g("faceosc_raw", False))),
            argv=tuple(g("command_line")) if g("command_line") is not None else None)
