"""Pure parts of the pipeline: pose re-expression, calibration, statistics, the frame loop."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.canonical import load_canonical
from engine.embedding import load_embedding, reference_landmarks
from engine.errors import UserError
from engine.headspace import load_head
from realtime.app import parse_size
from realtime.pipeline import Pipeline, RunStats
from realtime.record import FrameRecord
from realtime.sources import SourceFrame
from realtime.stages import Calibrator, DecodeStage, head_pose_from_canonical
from realtime.tracker import pose_from_landmarks


def _project(points_mm: np.ndarray, pose) -> np.ndarray:
    """Scaled orthographic projection of head/canonical-frame points to pixels (y down)."""
    cam = pose.scale_px_per_mm * points_mm @ pose.rotation.T.astype(np.float64)
    return np.stack([pose.center_px[0] + cam[:, 0], pose.center_px[1] - cam[:, 1]], axis=1)


def test_head_pose_places_head_landmarks_where_the_face_is():
    """Synthetic observation: the canonical face at a known pose. The pose re-expressed for the head
    frame must project the head's own embedded landmarks onto the observed landmarks."""
    canon, head, emb = load_canonical(), load_head(), load_embedding()
    rot = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix()
    scale, centre = 2.5, np.array([320.0, 240.0])
    up = scale * canon.vertices @ rot.T  # y up, z to viewer
    px = np.stack([centre[0] + up[:, 0], centre[1] - up[:, 1], -up[:, 2]], axis=1)
    pose_c = pose_from_landmarks(px.astype(np.float32), canon, (640, 480))
    assert np.allclose(pose_c.rotation, rot, atol=1e-4) and abs(pose_c.scale_px_per_mm - scale) < 1e-3
    pose_h = head_pose_from_canonical(pose_c, emb.head_from_canonical())
    ref = reference_landmarks(head.vertices, emb).astype(np.float64)
    err = np.linalg.norm(_project(ref, pose_h) - px[:, :2], axis=1)
    # the head differs from the canonical face by the embedding residual (a few mm) × 2.5 px/mm
    assert np.median(err) < 2.5 * 3.0, np.median(err)


def test_calibrator_rebases_on_neutral():
    cal = Calibrator()
    rest = np.full(52, 0.2, np.float32)
    assert np.array_equal(cal(rest), rest)  # uncalibrated: unchanged
    cal.start(3)
    for _ in range(3):
        cal(rest)
    assert not cal.collecting
    assert np.allclose(cal(rest), 0.0)
    assert np.allclose(cal(np.ones(52, np.float32)), 1.0)
    mid = cal(np.full(52, 0.6, np.float32))
    assert np.allclose(mid, 0.5)


class _FakeBackend:
    name, device = "fixed", "cpu"

    def __init__(self, v: np.ndarray) -> None:
        self.v = v

    def infer(self, lm):
        return self.v[None], np.linspace(0, 1, 52, dtype=np.float32)[None]


def test_decode_stage_avatar_mode_uses_expression_targets():
    head = load_head()
    stage = DecodeStage(_FakeBackend(head.vertices + 1.0), head.vertices, head.expression_targets, "avatar")
    rec = FrameRecord(0, 0.0, 0, face_found=True, landmarks_norm=np.zeros((468, 3), np.float32))
    stage(rec)
    w = np.linspace(0, 1, 52, dtype=np.float32)
    want = head.vertices + np.tensordot(w, head.expression_targets, axes=1)
    assert np.allclose(rec.vertices, want, atol=1e-3)
    stage_user = DecodeStage(_FakeBackend(head.vertices + 1.0), head.vertices, head.expression_targets, "user")
    rec2 = FrameRecord(0, 0.0, 0, face_found=True, landmarks_norm=np.zeros((468, 3), np.float32))
    stage_user(rec2)
    assert np.allclose(rec2.vertices, head.vertices + 1.0)
    with pytest.raises(ValueError):
        DecodeStage(None, head.vertices, head.expression_targets, "nobody")


def test_decode_stage_skips_frames_without_face():
    head = load_head()
    stage = DecodeStage(_FakeBackend(head.vertices), head.vertices, head.expression_targets)
    rec = FrameRecord(0, 0.0, 0, face_found=False)
    stage(rec)
    assert rec.vertices is None and rec.expressions is None


class _ListSource:
    def __init__(self, n: int) -> None:
        self.frames = [SourceFrame(np.zeros((4, 4, 3), np.uint8), 33 * i, float(i), i) for i in range(n)]

    def read(self):
        return self.frames.pop(0) if self.frames else None


class _Mark:
    def __init__(self, name: str) -> None:
        self.name, self.seen = name, []

    def __call__(self, record: FrameRecord) -> None:
        self.seen.append(record.frame_id)
        record.face_found = record.frame_id % 2 == 0


class _WaitingSource(_ListSource):
    """Each read sleeps 30 ms and says it waited 25 of them (as a camera or a paced clip does)."""

    def read(self):
        f = super().read()
        if f is None:
            return None
        time.sleep(0.03)
        return replace(f, waited_ms=25.0)


def test_pipeline_times_the_sources_wait_apart_from_capture():
    r = Pipeline(_WaitingSource(3), [_Mark("track")]).step()
    assert r.timings_ms["wait"] == 25.0  # what the source said it waited
    assert 4.0 <= r.timings_ms["capture"] < 25.0  # the rest of the read's 30 ms (and more, on a busy machine)
    assert list(r.timings_ms)[:2] == ["capture", "wait"]
    assert "wait" not in Pipeline(_ListSource(3), [_Mark("track")]).step().timings_ms  # a source that never waits


def test_pipeline_runs_stages_in_order_and_counts(tmp_path):
    a, b = _Mark("track"), _Mark("osc")
    stats = Pipeline(_ListSource(10), [a, b]).run(max_frames=7)
    assert a.seen == b.seen == list(range(7))
    s = stats.summary()
    assert s["frames"] == 7 and abs(s["found_ratio"] - 4 / 7) < 1e-3
    assert set(s["stages_ms"]) == {"capture", "track", "osc"}
    assert "latency_ms" in s
    stats.write_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 7
    # end of stream stops the loop
    assert Pipeline(_ListSource(3), [a]).run().frames == 3


def test_runstats_percentiles():
    st = RunStats()
    for i in range(100):
        st.add(FrameRecord(i, 0.0, i, timings_ms={"track": float(i)}), latency_ms=float(i))
    st.wall_s = 2.0
    s = st.summary()
    assert s["fps"] == 50.0
    assert abs(s["stages_ms"]["track"]["p50"] - 49.5) < 1e-6
    assert abs(s["latency_ms"]["p95"] - 94.05) < 1e-6


def test_parse_size():
    assert parse_size("1280x480") == (1280, 480)
    assert parse_size(None) is None
    with pytest.raises(UserError):
        parse_size("big")


class _Boom:
    name = "track"

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, record: FrameRecord) -> None:
        if record.frame_id == self.at:
            raise RuntimeError("tracker failed")


@pytest.mark.parametrize("depth", [1, 3])
def test_overlapped_pipeline_keeps_order_and_counts(depth):
    import threading

    seen_threads: dict[str, set] = {"track": set(), "osc": set()}

    class _Where(_Mark):
        def __call__(self, record: FrameRecord) -> None:
            seen_threads[self.name].add(threading.current_thread().name)
            super().__call__(record)

    a, b = _Where("track"), _Where("osc")
    before = threading.active_count()
    stats = Pipeline(_ListSource(10), [a, b], front_stages=1, depth=depth).run(max_frames=7)
    assert b.seen == list(range(7)) and a.seen[:7] == list(range(7)) and len(a.seen) <= 7
    assert seen_threads["track"] == {"pipeline-front"} and seen_threads["osc"] == {threading.current_thread().name}
    s = stats.summary()
    assert s["frames"] == 7 and set(s["stages_ms"]) == {"capture", "track", "osc"} and "latency_ms" in s
    assert threading.active_count() == before  # the worker was joined
    assert Pipeline(_ListSource(3), [_Mark("track"), _Mark("osc")], front_stages=1).run().frames == 3  # end of stream


def test_overlapped_pipeline_reraises_front_errors_and_stops():
    with pytest.raises(RuntimeError, match="tracker failed"):
        Pipeline(_ListSource(10), [_Boom(4), _Mark("osc")], front_stages=1).run()
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    stats = Pipeline(_ListSource(100), [_Mark("track"), _Mark("osc")], should_stop=stop, front_stages=1).run()
    assert stats.frames == 3
    with pytest.raises(ValueError):
        Pipeline(_ListSource(1), [_Mark("track")], front_stages=2)


def test_non_finite_model_output_is_a_frame_without_face(caplog):
    """A diverged model (one NaN weight) on the real torch-cpu back-end: the stage drops the frame as
    "no face" with one warning instead of passing NaN on to OSC and the renderer."""
    import logging

    import torch

    from engine.backends import create_backend
    from engine.checkpoint import load_face_model

    model = load_face_model()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("decoder"))[0].fill_(float("nan"))
    backend = create_backend("torch-cpu", model=model)
    head = load_head()
    stage = DecodeStage(backend, head.vertices, head.expression_targets)
    caplog.set_level(logging.WARNING, logger="realtime.stages")
    recs = [FrameRecord(i, 0.0, i, face_found=True, landmarks_norm=reference_landmarks(head.vertices, load_embedding()))
            for i in range(3)]
    for rec in recs:
        stage(rec)
        assert not rec.face_found and rec.vertices is None and rec.expressions is None
    assert stage.non_finite == 3
    assert sum("non-finite" in r.getMessage() for r in caplog.records) == 1  # one warning, not one per frame


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    import shutil

    import torch

    from engine.checkpoint import CHECKPOINT_PATH, hash_path, load_face_model, sha256_file
    from engine.errors import CheckpointError

    payload = torch.load(CHECKPOINT_PATH, map_location="cpu", weights_only=False)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key].clone().fill_(float("nan"))
    bad = tmp_path / "diverged.pt"
    torch.save(payload, bad)
    hash_path(bad).write_text(sha256_file(bad) + "\n")
    with pytest.raises(CheckpointError, match="non-finite weights .* diverged"):
        load_face_model(bad)
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        load_face_model(folder)
    shutil.copy(CHECKPOINT_PATH, tmp_path / "copy.pt")
    with pytest.raises(CheckpointError, match="no content hash"):
        load_face_model(tmp_path / "copy.pt")


def test_run_statistics_stay_bounded_however_long_the_run():
    """An 8-hour session at 30 FPS is 864,000 frames: the statistics keep a fixed-size sample, and its
    percentiles stay those of the whole run (a uniform reservoir, not just the last frames)."""
    from realtime.pipeline import RESERVOIR_SIZE, Reservoir

    st = RunStats()
    n = 200_000
    ramp = np.linspace(0.0, 100.0, n)  # timings that drift over the run: a "last N" window would miss it
    for i in range(n):
        st.add(FrameRecord(i, 0.0, i, timings_ms={"track": float(ramp[i])}), latency_ms=float(ramp[i]))
    assert len(st.stages_ms["track"]) == RESERVOIR_SIZE and len(st.latency_ms) == RESERVOIR_SIZE
    assert st.stages_ms["track"].values().nbytes == RESERVOIR_SIZE * 8
    s = st.summary()
    assert s["frames"] == n
    assert abs(s["stages_ms"]["track"]["p50"] - 50.0) < 2.0 and abs(s["latency_ms"]["p95"] - 95.0) < 2.0
    r = Reservoir(capacity=10)
    r.extend(range(5))
    assert list(r.values()) == [0, 1, 2, 3, 4]  # exact until full
