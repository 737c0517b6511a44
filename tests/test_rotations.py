"""engine.rotations: quaternions equal scipy's (the head pose sent by OSC and VMC included), and the
Euler helpers keep their conventions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.rotations import matrix_from_quaternion, pitch_yaw_roll, quaternion_from_matrix, yaw_pitch_roll
from realtime.record import HeadPose


def _pose(rotation: np.ndarray) -> HeadPose:
    return HeadPose(rotation.astype(np.float32), np.zeros(3, np.float32), 1.0, np.zeros(2, np.float32))


def test_quaternion_from_matrix_is_scipys():
    mats = Rotation.random(300, random_state=5).as_matrix()
    mats = np.concatenate([mats, Rotation.from_rotvec([[math.pi, 0, 0], [0, 0, math.pi - 1e-7]]).as_matrix()])
    for m in (mats, mats.astype(np.float32)):
        for r in m:
            np.testing.assert_allclose(quaternion_from_matrix(r), Rotation.from_matrix(r.astype(np.float64)).as_quat(),
                                       atol=1e-12)
    for q in Rotation.random(100, random_state=6).as_quat() * 0.3:
        np.testing.assert_allclose(matrix_from_quaternion(q), Rotation.from_quat(q).as_matrix(), atol=1e-14)
    with pytest.raises(ValueError, match="determinant"):
        quaternion_from_matrix(np.diag([1.0, -1.0, 1.0]))


def test_head_pose_quaternion_is_scipys_in_float32():
    """What OSC's /face/pose/quaternion and VMC's head bone send: scipy's quaternion, float32."""
    for r in Rotation.random(500, random_state=7).as_matrix().astype(np.float32):
        q = _pose(r).quaternion()
        assert q.dtype == np.float32
        np.testing.assert_array_equal(q, Rotation.from_matrix(r.astype(np.float64)).as_quat().astype(np.float32))


@pytest.mark.parametrize("pitch,yaw,roll", [(0.0, 0.0, 0.0), (0.2, -0.4, 0.1), (-0.5, 0.3, -0.7), (1.0, 1.2, 2.0)])
def test_view_euler_angles_invert_rz_ry_rx(pitch, yaw, roll):
    r = Rotation.from_euler("ZYX", [roll, yaw, pitch]).as_matrix()  # intrinsic Z·Y·X = Rz(roll)·Ry(yaw)·Rx(pitch)
    np.testing.assert_allclose(pitch_yaw_roll(r), [pitch, yaw, roll], atol=1e-6)
    np.testing.assert_allclose(yaw_pitch_roll(r), [yaw, pitch, roll], atol=1e-6)
    np.testing.assert_array_equal(_pose(r).euler_xyz_rad(), pitch_yaw_roll(r.astype(np.float32)))


def test_yaw_turns_the_face_towards_image_right():
    a = math.radians(20.0)
    rot_y = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    assert (rot_y @ [0.0, 0.0, 1.0])[0] > 0  # the face's forward axis now points to +x (image right)
    assert yaw_pitch_roll(rot_y)[0] == pytest.approx(a, abs=1e-6)
