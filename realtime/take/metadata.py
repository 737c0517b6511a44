"""What a take's json records about the run that made it: software versions, model, source, options."""
from __future__ import annotations

import platform
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

PACKAGES = ("facemesh-live", "mediapipe", "onnxruntime", "torch", "numpy", "opencv-contrib-python", "ray")


def file_sha256(path: Path | str | None, length: int = 16) -> str | None:
    """The first `length` hex digits of a file's SHA-256 (None when there is no such file)."""
    if path is None or not Path(path).is_file():
        return None
    from engine.assets import sha256_file

    return sha256_file(Path(path))[:length]


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the output (those installed), and Python's."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            if name == "facemesh-live":
                out[name] = _pyproject_version()
    return {k: v for k, v in out.items() if v}


def _pyproject_version() -> str:
    p = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        for line in p.read_text().splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def run_metadata(*, model_path, backend: str, source: dict, options: dict, argv: list[str] | None = None) -> dict:
    """The json's "run" facts: versions, model file and hash, back-end, source, options, command line
    (`argv`, default this process's arguments)."""
    return {"versions": versions(), "model": {"path": str(model_path), "sha256_16": file_sha256(model_path)},
            "backend": backend, "source": source, "options": options, "argv": sys.argv[1:] if argv is None else list(argv),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}}
