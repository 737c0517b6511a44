"""Where the built assets live, the sizes every part agrees on, and how a derived asset is loaded.

- `MODELS_DIR`: the repository's `models/` folder (head, hierarchy, embedding, checkpoint, ONNX, caches).
- `NUM_LANDMARKS` (468): the canonical face mesh's landmarks — the model's input, the tracker's
  pose-normalised output. `TRACKER_LANDMARKS` (478): what MediaPipe's FaceLandmarker returns per
  frame (the 468 plus 10 iris points), pixels. `NUM_EXPRESSIONS` (52): `EXPRESSION_NAMES`.
- `load_npz_asset` / `asset_errors`: a missing or unreadable derived asset becomes a
  `CheckpointError` naming the file and the fix ("rebuild it with `python main.py build-assets`").
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from engine.errors import CheckpointError
from engine.expressions import EXPRESSION_NAMES

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

NUM_LANDMARKS = 468
TRACKER_LANDMARKS = 478
NUM_EXPRESSIONS = len(EXPRESSION_NAMES)

REBUILD_ASSETS = "rebuild it with `python main.py build-assets`"
# What a missing member, a truncated or non-zip file, or bad contents raise from np.load / json.
UNREADABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)

T = TypeVar("T")


@contextmanager
def asset_errors(path: Path, fix: str = REBUILD_ASSETS, also: tuple[type[BaseException], ...] = ()
                 ) -> Iterator[None]:
    """Turn a failure to read `path` inside the block into a one-line CheckpointError:
    "<path> not found; <fix>" or "<path> is unreadable (<reason>); <fix>". `also`: further exception
    types that mean bad contents (e.g. TypeError for a JSON file of the wrong shape)."""
    try:
        yield
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; {fix}") from None
    except (*UNREADABLE, *also) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); {fix}") from None


def load_npz_asset(path: Path, build: Callable[[np.lib.npyio.NpzFile], T], fix: str = REBUILD_ASSETS) -> T:
    """`build(z)` on the opened npz archive at `path` (no pickles); read failures → CheckpointError
    (`asset_errors`)."""
    with asset_errors(path, fix):
        with np.load(path, allow_pickle=False) as z:
            return build(z)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
