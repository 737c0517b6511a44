"""engine.assets: one models folder, one set of shared sizes, one way to report a bad asset file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.assets import (MODELS_DIR, NUM_EXPRESSIONS, NUM_LANDMARKS, REBUILD_ASSETS, TRACKER_LANDMARKS,
                           load_npz_asset)
from engine.canonical import load_canonical
from engine.embedding import load_embedding
from engine.errors import CheckpointError
from engine.expressions import EXPRESSION_NAMES
from engine.headspace import load_head
from engine.hierarchy import load_hierarchy
from engine.blink_target import REFIT as BLINK_REFIT, load_blink_target
from engine.jaw_target import REFIT, load_jaw_target
from engine.noise import load_tracker_noise


def test_shared_constants():
    assert MODELS_DIR == Path(__file__).resolve().parent.parent / "models"
    assert (NUM_LANDMARKS, TRACKER_LANDMARKS, NUM_EXPRESSIONS) == (468, 478, len(EXPRESSION_NAMES)) == (468, 478, 52)


def test_load_npz_asset_reads_and_reports(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(3))
    assert load_npz_asset(good, lambda z: z["a"].sum()) == 3
    with pytest.raises(CheckpointError, match=r"missing.npz not found; rebuild it with `python main.py build-assets`"):
        load_npz_asset(tmp_path / "missing.npz", lambda z: z["a"])
    with pytest.raises(CheckpointError, match=r"good.npz is unreadable \(.*\); the fix"):
        load_npz_asset(good, lambda z: z["b"], fix="the fix")


LOADERS = [load_canonical, load_embedding, load_head, load_hierarchy, load_tracker_noise, load_jaw_target,
           load_blink_target]
FIXES = {load_jaw_target: REFIT, load_blink_target: BLINK_REFIT}  # what each loader's line tells the user to do (default: REBUILD_ASSETS)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated", b"not an archive", b"{}", b"[1, 2]"],
                         ids=["missing", "empty", "truncated-zip", "garbage", "empty-json", "json-list"])
def test_every_asset_loader_reports_a_bad_file_in_one_line(tmp_path, loader, content):
    path = tmp_path / "asset.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        loader(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and msg.endswith(FIXES.get(loader, REBUILD_ASSETS))
    assert ("not found" in msg) == (content is None) and "\n" not in msg


def test_tracker_noise_json_of_the_wrong_shape_is_unreadable(tmp_path):
    path = tmp_path / "noise.json"
    path.write_text(json.dumps({"sigma_mm": [[1.0, 2.0, 3.0]]}))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_tracker_noise(path)
