"""The retargeting front end (engine/retarget.py) and the real-face metrics (engine/real_metrics.py).

Synthetic checks of the solver's maths and the metrics (the real demo clip's blinks, the defect of
issue #12 — eyeBlink exactly 0 on all 120 frames — are checked in tests/test_eyelids.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.expressions import EXPRESSION_NAMES
from engine.real_metrics import auc
from engine.retarget import (DEAD_ZONE, LEFT_EYE, PRIMARY_UNITS, RIGHT_EYE, SOLVED_UNITS, ExpressionSolver,
                             GazeNeutral, NeutralEstimator, Retargeter, box_qp, close_lips, dead_zone, gaze_weights,
                             iris_position, lip_gap, orbit_ring)

I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


@pytest.fixture(scope="module")
def retargeter() -> Retargeter:
    return Retargeter.load()


def test_box_qp_matches_scipy_bvls_and_the_kkt_conditions():
    rng = np.random.default_rng(3)
    for n in (1, 5, 43):
        a = rng.normal(size=(3 * n + 4, n))
        a[:, 0] += 0.9 * a[:, -1]  # correlated columns, as blendshapes are
        g = a.T @ a + 1e-3 * np.eye(n)
        for _ in range(5):
            c = g @ rng.uniform(-0.5, 1.5, n) + rng.normal(size=n)
            w = box_qp(g, c)
            assert np.all((w >= 0) & (w <= 1))
            grad = g @ w - c
            assert np.all(grad[w <= 1e-12] >= -1e-7) and np.all(grad[w >= 1 - 1e-12] <= 1e-7)
            inner = (w > 1e-12) & (w < 1 - 1e-12)
            assert np.allclose(grad[inner], 0.0, atol=1e-7)
            from scipy.optimize import lsq_linear

            lc = np.linalg.cholesky(g)
            ref = lsq_linear(lc.T, np.linalg.solve(lc, c), bounds=(0, 1), method="bvls", tol=1e-12).x
            assert np.allclose(w, ref, atol=1e-7)
            assert np.allclose(box_qp(g, c, start=rng.uniform(0, 1, n)), w, atol=1e-7)  # warm start
            assert np.allclose(box_qp(g, c, start=w), w, atol=1e-7)  # started at the answer: stays there


def test_solver_recovers_weights_of_clean_offsets(retargeter):
    """Offsets made from the solved units' own (response-scaled) basis come back, bounds respected."""
    model = retargeter.model
    solver = ExpressionSolver(model, np.full((468, 3), 0.3), sparsity=0.0, secondary=0.0, ridge=1e-6, response={})
    truth = np.zeros(52)
    for name, v in (("eyeBlinkLeft", 0.8), ("jawOpen", 0.5), ("mouthSmileLeft", 0.7), ("mouthSmileRight", 0.6),
                    ("browInnerUp", 0.4)):
        truth[I[name]] = v
    offset = np.einsum("j,jnc->nc", truth, model.expressions)
    w = solver.solve(offset)
    solved = [I[n] for n in SOLVED_UNITS]
    assert np.abs(w[solved] - truth[solved]).max() < 0.02, {EXPRESSION_NAMES[j]: w[j] for j in solved if w[j] > .02}
    assert w[I["tongueOut"]] == 0 and all(w[I[n]] == 0 for n in EXPRESSION_NAMES if n.startswith("eyeLook"))
    assert np.all((solver.solve(5 * offset) >= 0) & (solver.solve(5 * offset) <= 1))


def test_orbit_ring_excludes_the_second_eye_ring_but_keeps_the_lids(retargeter):
    ring = set(orbit_ring(retargeter.model).tolist())
    assert {27, 28, 29, 30, 56}.issubset(ring) and {257, 258, 259, 260, 286}.issubset(ring)
    assert not ring & {159, 145, 386, 374, 158, 160, 385, 387}


def test_neutral_estimator_moves_from_the_prior_to_the_persons_face():
    prior = np.zeros((468, 3))
    person = np.random.default_rng(0).normal(size=(468, 3))
    person = close_lips(person)
    est = NeutralEstimator(prior)
    assert np.array_equal(est.neutral, prior)
    blink = person.copy()
    blink[159, 1] -= 5.0
    for i in range(200):
        est.update(blink if i % 17 == 0 else person)  # brief events do not move a median
    assert np.abs(est.neutral - person).max() < 0.2 * np.abs(person).max()
    est.calibrate(np.stack([person + 1.0] * 3))
    assert est.calibrated and np.allclose(est.neutral, person + 1.0)
    v = est.version
    est.update(person)
    assert est.version == v and np.allclose(est.neutral, person + 1.0)  # calibrated: no adaptation
    est.reset()
    assert np.array_equal(est.neutral, prior) and not est.calibrated


def test_lip_gap_and_close_lips():
    x = np.zeros((468, 3))
    x[13, 1], x[14, 1] = 3.0, -3.0
    assert lip_gap(x) > 0
    closed = close_lips(x)
    assert closed[13, 1] == closed[14, 1] == 0.0


def test_gaze_from_irises_is_symmetric_and_scale_free():
    px = np.zeros((478, 3))
    for eye, x0 in ((RIGHT_EYE, 100.0), (LEFT_EYE, 200.0)):
        px[eye["inner"], :2] = (x0 + (30 if eye is RIGHT_EYE else 0), 100)
        px[eye["outer"], :2] = (x0 + (0 if eye is RIGHT_EYE else 30), 100)
        px[eye["iris"], :2] = (x0 + 15, 100)
    neutral = GazeNeutral(iris_position(px, RIGHT_EYE), iris_position(px, LEFT_EYE))
    assert all(v == 0 for v in gaze_weights(px, neutral).values())
    look = px.copy()
    look[[RIGHT_EYE["iris"], LEFT_EYE["iris"]], 0] += 8.0  # both irises towards image right
    g = gaze_weights(look, neutral)
    # image right = the subject's left: the left eye looks out, the right eye in
    assert g["eyeLookOutLeft"] > 0.5 and g["eyeLookInRight"] > 0.5 and g["eyeLookInLeft"] == 0
    assert gaze_weights(look * 2.0, GazeNeutral(neutral.right, neutral.left)) == g  # image scale drops out
    up = px.copy()
    up[[RIGHT_EYE["iris"], LEFT_EYE["iris"]], 1] -= 3.0  # image y is down
    g = gaze_weights(up, neutral)
    assert g["eyeLookUpLeft"] > 0.5 and g["eyeLookUpRight"] > 0.5 and g["eyeLookDownLeft"] == 0


def test_auc():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_retargeter_calibration_reads_the_neutral_as_zero(retargeter):
    r = Retargeter.load()
    face = r.estimator.prior + np.random.default_rng(1).normal(scale=0.3, size=(468, 3))
    r.start_calibration(3)
    for _ in range(3):
        r(face)
    res = r(face)
    assert res.weights.max() < 0.05
    blink = face + 0.55 * r.model.expressions[I["eyeBlinkLeft"]]
    assert r(blink).weights[I["eyeBlinkLeft"]] > 0.8  # full range left after calibration
    assert res.landmarks.shape == (468, 3) and res.identity.shape == (r.model.num_identity,)


def test_clip_metrics_on_a_made_up_clip():
    """Blink AUC, peaks and the jaw correlation from hand-made weights and landmarks."""
    from engine.real_metrics import clip_metrics

    n = 60
    lms = np.zeros((n, 468, 3))
    lms[:, 159, 1] = lms[:, 386, 1] = 8.0  # open eyes
    gap = np.linspace(0, 20, n)
    lms[:, 13, 1] = gap  # upper inner lip: the lip gap grows over the clip
    w = np.zeros((n, 52), np.float32)
    w[:, I["jawOpen"]] = gap / 30.0
    w[30, I["eyeBlinkLeft"]] = w[30, I["eyeBlinkRight"]] = 0.9
    lms[30, [159, 386], 1] = 1.0
    w[5, I["mouthSmileLeft"]] = w[5, I["mouthSmileRight"]] = 0.7
    labels = {"blinks": [[30, 30]], "smiles": [5], "neutral": [50]}
    m = clip_metrics(w, np.ones(n, bool), lms, labels)
    assert m["blink"]["auc_left"] == 1.0 and m["blink"]["peak_min"] == pytest.approx(0.9)
    assert m["blink"]["proxy_auc"] == 1.0 and m["blink"]["open_median_left"] == 0.0
    assert m["jaw"]["r_lip_gap"] > 0.99 and m["smile"]["min"] == pytest.approx(0.7)
    assert m["neutral"]["smile_median"] == 0.0
    assert "eyeBlinkLeft" in m["moved"] and "browInnerUp" not in m["moved"]


def test_the_looking_ahead_gaze_keeps_adapting_past_its_history():
    """The iris positions' median follows the person for the whole session, not only its first
    GAZE_HISTORY frames (it once froze there)."""
    from engine.retarget import GAZE_HISTORY

    r = Retargeter.load()
    a, b = np.full((2, 2), 0.5), np.array([[0.6, 0.05], [0.6, 0.05]])
    for _ in range(GAZE_HISTORY + 50):
        r._gaze_update(a)
    assert np.allclose(r._gaze_neutral, a)
    for _ in range(GAZE_HISTORY):
        r._gaze_update(b)
    assert np.allclose(r._gaze_neutral, b)
    r.reset()
    r._gaze_update(a)
    assert np.allclose(r._gaze_neutral, a)


def test_dead_zone_maps_only_the_secondary_solved_units():
    """w ↦ clip((w − z)/(1 − z), 0, 1) on the solved units outside PRIMARY_UNITS; the primary units,
    gaze and tongueOut pass unchanged; any leading shape; the input is not modified."""
    rng = np.random.default_rng(5)
    w = rng.uniform(0, 1, (3, 4, 52)).astype(np.float32)
    kept = w.copy()
    out = dead_zone(w)
    assert out.shape == w.shape and out.dtype == np.float32 and np.array_equal(w, kept)
    zoned = [I[n] for n in SOLVED_UNITS if n not in PRIMARY_UNITS]
    other = [j for j in range(52) if j not in zoned]
    z = np.float32(DEAD_ZONE)
    assert np.allclose(out[..., zoned], np.clip((w[..., zoned] - z) / (1 - z), 0, 1), atol=1e-7)
    assert np.array_equal(out[..., other], w[..., other])
    assert len(zoned) > 30 and I["jawOpen"] in other and I["eyeLookInLeft"] in other


def test_warm_up_leaves_the_person_untouched(retargeter):
    """warm_up compiles on a copy: the neutral, the lid and gaze histories and the solver's warm start
    are those of before, so the first real frame reads exactly as without it."""
    import copy

    a, b = copy.deepcopy(retargeter), copy.deepcopy(retargeter)
    a.warm_up()
    assert a.estimator.frames_used == b.estimator.frames_used and a._gaze_n == b._gaze_n
    assert np.array_equal(a.solver._last, b.solver._last) and np.array_equal(a.eyelids.value[0], b.eyelids.value[0])
    x = a.estimator.neutral.astype(np.float32) + 0.3
    px = np.random.default_rng(1).uniform(0, 200, (478, 3)).astype(np.float32)
    ra, rb = a(x, px), b(x, px)
    assert np.array_equal(ra.weights, rb.weights) and np.array_equal(ra.landmarks, rb.landmarks)
