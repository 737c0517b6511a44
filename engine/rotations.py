"""Rotation conversions for the head pose: matrix ↔ quaternion, and the Euler angles we send.

Quaternions are (x, y, z, w), scipy's order and sign convention: `quaternion_from_matrix` equals
`scipy.spatial.transform.Rotation.from_matrix(m).as_quat()` to ~1e-15 (tests/test_rotations.py,
tests/test_smoothing.py), ~10× faster for one matrix. It is what the smoother filters, what OSC's
`/face/pose/quaternion` and VMC's head bone send (`HeadPose.quaternion`) and what takes store.

Euler angles. Our head rotation maps head-frame directions to the camera/view frame (x right, y up,
z towards the viewer). Two conventions are in use, on purpose, because the receivers differ:

- **View axes, R = Rz(roll)·Ry(yaw)·Rx(pitch)** (`pitch_yaw_roll`, `yaw_pitch_roll`: the same three
  angles, in two orders): pitch > 0 tips the face up, yaw > 0 turns it towards image right (the
  subject's own left in an unmirrored image), roll > 0 tilts it anticlockwise. OSC's
  `/face/pose/euler` sends (pitch, yaw, roll) (`HeadPose.euler_xyz_rad`); Live Link Face CSVs store
  (yaw, pitch, roll) (`realtime.take.writer`).
- **FaceTracker's image axes, R = Rx(pitch)·Ry(yaw)·Rz(roll)** with y down and z into the image:
  FaceOSC's `/pose/orientation` (`realtime.osc.faceosc.orientation`, which conjugates our rotation by
  diag(1, −1, −1) first). Not the same angles as the view-axes ones: keep them apart.
"""
from __future__ import annotations

import math

import numpy as np


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """[4] float64 unit quaternion (x, y, z, w) of a rotation matrix [3,3] (any float dtype).

    Like `scipy.spatial.transform.Rotation.from_matrix(m).as_quat()` (equal to ~1e-15), ~10× faster
    for one matrix: a slightly non-orthogonal matrix (float32 rounding) is first replaced by its
    nearest rotation (the orthogonal polar factor, by Newton steps M ← (M + M⁻ᵀ)/2, as scipy's SVD
    gives it), then converted by the same branch choice as scipy. Raises ValueError if det ≤ 0.
    """
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3).tolist()
    for _ in range(20):
        m, change = _polar_step(m)
        if change < 1e-6:  # quadratic convergence: what is left is < ~change², below 1e-12
            break
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = m
    tr = m00 + m11 + m22
    decision = [m00, m11, m22, tr]
    choice = decision.index(max(decision))
    if choice == 0:
        q = [1 - tr + 2 * m00, m10 + m01, m20 + m02, m21 - m12]
    elif choice == 1:
        q = [m10 + m01, 1 - tr + 2 * m11, m21 + m12, m02 - m20]
    elif choice == 2:
        q = [m20 + m02, m21 + m12, 1 - tr + 2 * m22, m10 - m01]
    else:
        q = [m21 - m12, m02 - m20, m10 - m01, 1 + tr]
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return np.array([q[0] / n, q[1] / n, q[2] / n, q[3] / n])


def _polar_step(m: list[list[float]]) -> tuple[list[list[float]], float]:
    """One Newton step towards the rotation nearest to the 3×3 `m`: (M + M⁻ᵀ)/2, and the largest
    element change. M⁻ᵀ is the cofactor matrix over the determinant; det ≤ 0 → ValueError."""
    (a, b, c), (d, e, f), (g, h, i) = m
    cof = [[e * i - f * h, f * g - d * i, d * h - e * g],
           [c * h - b * i, a * i - c * g, b * g - a * h],
           [b * f - c * e, c * d - a * f, a * e - b * d]]
    det = a * cof[0][0] + b * cof[0][1] + c * cof[0][2]
    if not det > 0:
        raise ValueError(f"not a rotation matrix (determinant {det}): {m}")
    half_inv = 0.5 / det
    out = [[0.5 * mv + half_inv * cv for mv, cv in zip(mr, cr)] for mr, cr in zip(m, cof)]
    change = max(abs(ov - mv) for orow, mrow in zip(out, m) for ov, mv in zip(orow, mrow))
    return out, change


def matrix_from_quaternion(q_xyzw: np.ndarray) -> np.ndarray:
    """[3,3] float64 rotation matrix of a quaternion (x, y, z, w), normalised first — the formula of
    `scipy.spatial.transform.Rotation.from_quat(q).as_matrix()`."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64).tolist()
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    x2, y2, z2, w2 = x * x, y * y, z * z, w * w
    xy, zw, xz, yw, yz, xw = x * y, z * w, x * z, y * w, y * z, x * w
    return np.array([[x2 - y2 - z2 + w2, 2 * (xy - zw), 2 * (xz + yw)],
                     [2 * (xy + zw), -x2 + y2 - z2 + w2, 2 * (yz - xw)],
                     [2 * (xz - yw), 2 * (yz + xw), -x2 - y2 + z2 + w2]])


def _view_euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) radians of a head → camera rotation [3,3] with R = Rz(roll)·Ry(yaw)·Rx(pitch)
    in view axes (module docstring); yaw is clamped to [−π/2, π/2]."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return pitch, yaw, roll


def pitch_yaw_roll(rotation: np.ndarray) -> np.ndarray:
    """[3] float32 (pitch about x, yaw about y, roll about z) radians, R = Rz·Ry·Rx in view axes
    (OSC's `/face/pose/euler`)."""
    return np.array(_view_euler(rotation), dtype=np.float32)


def yaw_pitch_roll(rotation: np.ndarray) -> np.ndarray:
    """[3] float32 (yaw, pitch, roll) radians of a head → camera rotation [3,3], R = Rz(roll)·Ry(yaw)·Rx(pitch)
    in the camera frame (x right, y up, z towards the viewer): yaw > 0 turns the face towards image right
    (the subject's own left in an unmirrored image), pitch > 0 tips it up, roll > 0 tilts it anticlockwise.
    The angles of `pitch_yaw_roll` in Live Link Face's order."""
    pitch, yaw, roll = _view_euler(rotation)
    return np.array([yaw, pitch, roll], dtype=np.float32)
