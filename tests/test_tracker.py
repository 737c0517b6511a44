"""The MediaPipe tracker on the real demo clip, on a blank image, its pose maths and its misuse errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realtime.sources import VideoSource, demo_clip_path
from realtime.tracker import (FaceTracker, RunningMode, TrackerOptions, TrackResult, load_tracker_assets,
                              pose_from_landmarks)


@pytest.fixture(scope="module")
def assets():
    return load_tracker_assets()


@pytest.fixture(scope="module")
def demo():
    with VideoSource(demo_clip_path(), realtime=False) as src:
        return list(src)


@pytest.fixture(scope="module")
def video_results(assets, demo) -> list[TrackResult]:
    canonical, reference = assets
    with FaceTracker.create(TrackerOptions(running_mode=RunningMode.VIDEO), canonical, reference) as tr:
        return [tr.detect_for_video(f.image, f.timestamp_ms) for f in demo]


def test_every_demo_frame_has_a_face_inside_the_image(video_results, demo):
    assert all(r.face_found for r in video_results)
    h, w = demo[0].image.shape[:2]
    for r in video_results:
        assert r.landmarks_px.shape == (478, 3) and r.landmarks_px.dtype == np.float32
        xy = r.landmarks_px[:, :2]
        assert xy[:, 0].min() >= -2 and xy[:, 0].max() <= w + 2
        assert xy[:, 1].min() >= -2 and xy[:, 1].max() <= h + 2


def test_pose_is_near_frontal_and_plausible(video_results, demo):
    h, w = demo[0].image.shape[:2]
    for r in video_results:
        pitch, yaw, roll = np.degrees(r.pose.euler_xyz_rad())
        assert abs(yaw) < 25 and abs(pitch) < 35 and abs(roll) < 45
        assert abs(np.linalg.det(r.pose.rotation) - 1) < 1e-4
        # the face spans ~40-60 px of a 176-px frame: 0.2-0.6 px per canonical mm
        assert 0.2 < r.pose.scale_px_per_mm < 0.6
        cx, cy = r.pose.center_px
        assert 0.25 * w < cx < 0.75 * w and 0.2 * h < cy < 0.8 * h
        assert r.pose.translation_mm[2] < -200  # in front of the camera (z towards viewer)


def test_landmarks_norm_close_to_reference(video_results, assets):
    canonical, reference = assets
    idx = canonical.procrustes_indices
    for r in video_results:
        assert r.landmarks_norm.shape == (468, 3) and r.landmarks_norm.dtype == np.float32
        err = np.linalg.norm(r.landmarks_norm - reference, axis=1)
        assert err.mean() < 10.0  # mm: another person's face on the reference head
        assert err[idx].mean() < 8.0  # the Procrustes points are the ones aligned
        # the normalisation took out position and size: centroid and spread match the reference
        assert np.allclose(r.landmarks_norm[idx].mean(0), reference[idx].mean(0), atol=5.0)


def test_image_mode_matches_video_mode_on_a_frame(assets, demo, video_results):
    canonical, reference = assets
    with FaceTracker.create(TrackerOptions(running_mode=RunningMode.IMAGE), canonical, reference) as tr:
        res = tr.detect(demo[60].image)
    assert res.face_found
    d = np.linalg.norm(res.landmarks_px[:, :2] - video_results[60].landmarks_px[:, :2], axis=1)
    assert np.median(d) < 2.0  # pixels


def test_blank_image_has_no_face_and_no_exception(assets):
    canonical, reference = assets
    with FaceTracker.create(TrackerOptions(), canonical, reference) as tr:
        for i in range(3):
            res = tr.detect_for_video(np.full((240, 320, 3), 127, np.uint8), i * 33)
            assert res == TrackResult(False)
            assert res.pose is None and res.landmarks_px is None and res.landmarks_norm is None


def test_timestamp_and_mode_misuse_raise(assets):
    canonical, reference = assets
    img = np.zeros((64, 64, 3), np.uint8)
    tr = FaceTracker.create(TrackerOptions(running_mode=RunningMode.VIDEO), canonical, reference)
    tr.detect_for_video(img, 100)
    with pytest.raises(ValueError, match="not after"):
        tr.detect_for_video(img, 100)
    with pytest.raises(ValueError, match="not after"):
        tr.detect_for_video(img, 50)
    with pytest.raises(ValueError, match="integer"):
        tr.detect_for_video(img, 200.5)
    with pytest.raises(ValueError, match="IMAGE"):
        tr.detect(img)
    with pytest.raises(ValueError, match="uint8"):
        tr.detect_for_video(img.astype(np.float32), 300)
    tr.close()
    tr.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        tr.detect_for_video(img, 400)
    with FaceTracker.create(TrackerOptions(running_mode=RunningMode.IMAGE), canonical, reference) as tr2:
        with pytest.raises(ValueError, match="VIDEO"):
            tr2.detect_for_video(img, 0)


@pytest.mark.parametrize("bad", [
    dict(running_mode="video"), dict(min_detection_confidence=1.5), dict(min_tracking_confidence=-0.1),
    dict(fov_deg=0.0),
])
def test_bad_options_rejected_at_creation(assets, bad):
    canonical, reference = assets
    with pytest.raises(ValueError):
        FaceTracker.create(TrackerOptions(**bad), canonical, reference)


def test_bad_reference_rejected(assets):
    canonical, _ = assets
    with pytest.raises(ValueError, match="468"):
        FaceTracker.create(TrackerOptions(), canonical, np.zeros((33, 3)))


def test_pose_from_synthetic_landmarks_recovers_the_known_pose(assets):
    """Place the canonical face with a known rotation, scale and image position; recover them."""
    canonical, _ = assets
    w, h = 640, 480
    rot = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix()
    scale, cx, cy = 2.5, 300.0, 260.0
    up = scale * canonical.vertices.astype(np.float64) @ rot.T  # camera frame, y up, z to viewer, px
    px = np.stack([up[:, 0] + cx, -up[:, 1] + cy, -up[:, 2]], axis=1).astype(np.float32)
    pose = pose_from_landmarks(px, canonical, (w, h), fov_deg=60.0)
    assert np.allclose(pose.rotation, rot, atol=1e-4)
    assert pose.scale_px_per_mm == pytest.approx(scale, rel=1e-5)
    assert np.allclose(pose.center_px, [cx, cy], atol=1e-3)
    focal = 0.5 * w / math.tan(math.radians(30))
    depth = focal / scale
    assert np.allclose(pose.translation_mm, [(cx - w / 2) / scale, -(cy - h / 2) / scale, -depth], atol=1e-3)
    # the pinhole projection of the translation lands on center_px
    t = pose.translation_mm
    assert w / 2 + focal * t[0] / -t[2] == pytest.approx(cx, abs=1e-3)
    assert h / 2 - focal * t[1] / -t[2] == pytest.approx(cy, abs=1e-3)


def test_landmark_array_reads_the_wire_layout_and_falls_back():
    from mediapipe.framework.formats import landmark_pb2

    from realtime.tracker import landmark_array

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(478, 3)).astype(np.float32)
    plain = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in pts:
        plain.landmark.add(x=float(x), y=float(y), z=float(z))
    np.testing.assert_array_equal(landmark_array(plain), pts)
    # landmarks with more fields set (visibility) or a zero coordinate (not serialised) take the slow path
    odd = landmark_pb2.NormalizedLandmarkList()
    odd.CopyFrom(plain)
    odd.landmark[5].visibility = 0.5
    odd.landmark[9].x = 0.0
    want = pts.copy()
    want[9, 0] = 0.0
    np.testing.assert_array_equal(landmark_array(odd), want)
    assert landmark_array(landmark_pb2.NormalizedLandmarkList()).shape == (0, 3)
