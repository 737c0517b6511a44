"""The real-face evaluation's own arithmetic (the clips themselves: test_eyelids, test_jaw_target)."""
from __future__ import annotations

import numpy as np

from realtime.real_eval import format_real, smoothed_weights, summarise


def test_smoothed_weights_are_what_the_app_sends():
    n = 60
    w = np.zeros((n, 52), np.float32)
    w[20:, 3] = 1.0  # a step at frame 20
    found = np.ones(n, bool)
    found[40] = False  # the face is lost for one frame
    w[41:, 5] = 0.7  # and comes back with another unit already on
    out = smoothed_weights(w, found, fps=30.0)
    assert np.all(out[:20] == 0.0) and np.all(out[40] == 0.0)
    assert 0.0 < out[20, 3] < 1.0 and out[20, 3] < out[25, 3] < out[39, 3] <= 1.0  # One Euro lags a step
    assert out[41, 5] == np.float32(0.7)  # after a lost face the smoother restarts: the frame passes through
    assert not np.shares_memory(out, w) and np.all(w[20:, 3] == 1.0)


def test_the_scale_figures_of_the_sent_weights_are_summarised_and_printed():
    scale = {"clip_x0.5": {"frames": 10, "median": 0.2, "p95": 0.4, "max": 0.5, "landmarks_mm_median": 0.4,
                           "landmarks_mm_p90": 1.0, "face_height_px": 29.0,
                           "smoothed": {"frames": 10, "median": 0.15, "p95": 0.3, "max": 0.4}},
             "clip_x2": {"frames": 10, "median": 0.06, "p95": 0.1, "max": 0.2, "landmarks_mm_median": 0.07,
                         "landmarks_mm_p90": 0.2, "face_height_px": 118.0,
                         "smoothed": {"frames": 10, "median": 0.04, "p95": 0.1, "max": 0.2}}}
    result = {"inputs": {"clip": {"frames": 10, "found": 10}}, "scale": scale}
    s = summarise(result)
    assert s["scale_median_max"] == 0.2 and s["scale_smoothed_median_max"] == 0.15
    result["summary"] = s
    text = format_real(result)
    assert "after the app's One Euro smoothing" in text and "clip ×0.5 0.150, clip ×2 0.040" in text


def test_the_studied_thresholds_lower_small_faces_more_and_leave_the_kept_units():
    from realtime.real_scale_study import threshold_post
    from realtime.realdata import Tracked

    n = 2
    px = np.zeros((n, 478, 3), np.float32)
    px[:, 152, 1] = [40.0, 200.0]  # a 40-px face, a 200-px face
    t = Tracked("x", 30.0, (640, 480), np.ones(n, bool), px, np.zeros((n, 468, 3), np.float32), np.ones(n, np.float32))
    w = np.full((n, 52), 0.5, np.float32)
    out = threshold_post(8.0, 0.0, "hard", ("jawOpen",))(w, t)
    from engine.expressions import EXPRESSION_NAMES

    jaw, brow = EXPRESSION_NAMES.index("jawOpen"), EXPRESSION_NAMES.index("browInnerUp")
    assert np.allclose(out[:, brow], [0.5 - 8 / 40, 0.5 - 8 / 200]) and np.all(out[:, jaw] == 0.5)
