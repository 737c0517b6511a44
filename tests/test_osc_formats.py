"""FaceOSC- and VMC-compatible output: exact addresses and type tags over real UDP, and the values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from realtime.osc import OscSender, PERFECT_SYNC_NAMES, parse_target
from realtime.osc.faceosc import FACEOSC_MM_PER_UNIT, encode_faceosc, gestures, orientation
from realtime.osc.vmc import encode_vmc, unity_quaternion
from realtime.record import HeadPose
from tests.osc_support import Capture, face_record, messages_of, rot_y

FACEOSC_TAGS = {"/found": "i", "/pose/position": "ff", "/pose/scale": "f", "/pose/orientation": "fff",
                "/gesture/mouth/width": "f", "/gesture/mouth/height": "f", "/gesture/eyebrow/left": "f",
                "/gesture/eyebrow/right": "f", "/gesture/eye/left": "f", "/gesture/eye/right": "f",
                "/gesture/jaw": "f", "/gesture/nostrils": "f"}


def _euler2rot(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """FaceTracker's Euler2Rot (image axes): R = Rx(pitch)·Ry(yaw)·Rz(roll)."""
    cx, sx, cy, sy, cz, sz = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def test_faceosc_bundles_carry_faceosc_addresses_and_types():
    cap = Capture()
    with OscSender([parse_target(f"faceosc@127.0.0.1:{cap.port}")], faceosc_raw=True) as s:
        s.send(face_record(0))
        s.send(face_record(1, found=False))
    dgrams = cap.wait_quiet()
    assert len(dgrams) == 2 and all(d.startswith(b"#bundle\x00") for d in dgrams)  # one bundle per frame
    first = messages_of([dgrams[0]])
    tags = {a: t for a, t, _ in first}
    assert tags == {**FACEOSC_TAGS, "/raw": "f" * 132}
    assert [a for a, _, _ in first][0] == "/found" and first[0][2] == [1]
    assert messages_of([dgrams[1]]) == [("/found", "i", [0])]  # alone when no face


def test_faceosc_without_raw_and_small_mtu():
    msgs = messages_of(encode_faceosc(face_record(0), mtu=512))
    assert {a: t for a, t, _ in msgs} == FACEOSC_TAGS


def test_faceosc_gestures_in_faceosc_units():
    rec = face_record(0, yaw_deg=0.0, scale=2.0)
    g = gestures(rec.landmarks_px, rec.pose.scale_px_per_mm)
    # MediaPipe's canonical (neutral) face in FaceOSC units: the documented figures
    assert g["/gesture/mouth/width"] == pytest.approx(13.0, abs=0.1)
    assert g["/gesture/eye/left"] == pytest.approx(3.03, abs=0.05)
    assert g["/gesture/eyebrow/left"] == pytest.approx(6.42, abs=0.05)
    assert g["/gesture/jaw"] == pytest.approx(19.9, abs=0.1)
    assert g["/gesture/nostrils"] == pytest.approx(7.44, abs=0.05)
    assert g["/gesture/eye/left"] == pytest.approx(g["/gesture/eye/right"], rel=1e-4)  # symmetric face
    # the same face turned and twice as near reads the same
    rec2 = face_record(0, yaw_deg=25.0, scale=4.0)
    g2 = gestures(rec2.landmarks_px, rec2.pose.scale_px_per_mm)
    for k in g:
        assert g2[k] == pytest.approx(g[k], rel=1e-3)
    # and a wider-open mouth reads more
    lm = rec.landmarks_px.copy()
    d = lm[14] - lm[13]
    lm[14] += 10.0 * d / np.linalg.norm(d)  # lower inner lip 10 px (5 mm) further from the upper one
    assert gestures(lm, 2.0)["/gesture/mouth/height"] == pytest.approx(g["/gesture/mouth/height"] + 5 / FACEOSC_MM_PER_UNIT,
                                                                       rel=1e-3)


@pytest.mark.parametrize("pry", [(0.0, 0.0, 0.0), (0.2, -0.3, 0.1), (-0.4, 0.5, -0.25)])
def test_faceosc_orientation_matches_facetracker_euler(pry):
    flip = np.diag([1.0, -1.0, -1.0])
    ours = flip @ _euler2rot(*pry) @ flip  # the same rotation expressed in view axes
    np.testing.assert_allclose(orientation(ours), pry, atol=1e-9)


def test_faceosc_scale_is_pixels_per_unit():
    rec = face_record(0, scale=3.0)
    msgs = {a: p for a, _, p in messages_of(encode_faceosc(rec, 1400))}
    assert msgs["/pose/scale"][0] == pytest.approx(3.0 * FACEOSC_MM_PER_UNIT, rel=1e-6)
    x, y = msgs["/pose/position"]
    assert abs(x - 320) < 40 and abs(y - 240) < 60  # near the face centre in the image


def test_vmc_messages_have_exact_types_and_perfect_sync_names():
    cap = Capture()
    with OscSender([parse_target(f"vmc@127.0.0.1:{cap.port}")], mtu=1400) as s:
        s.send(face_record(0))
    dgrams = cap.wait_quiet()
    assert all(d.startswith(b"#bundle\x00") and len(d) <= 1400 for d in dgrams)
    msgs = messages_of(dgrams)
    seq = [a for a, _, _ in msgs]
    assert seq[:4] == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Root/Pos", "/VMC/Ext/Bone/Pos"]
    assert seq[-1] == "/VMC/Ext/Blend/Apply" and seq.count("/VMC/Ext/Blend/Apply") == 1
    tags = dict((a, t) for a, t, _ in msgs if a != "/VMC/Ext/Blend/Val")
    assert tags == {"/VMC/Ext/OK": "iiii", "/VMC/Ext/T": "f", "/VMC/Ext/Root/Pos": "sfffffff",
                    "/VMC/Ext/Bone/Pos": "sfffffff", "/VMC/Ext/Blend/Apply": ""}
    blends = [(p[0], t) for a, t, p in msgs if a == "/VMC/Ext/Blend/Val"]
    assert [n for n, _ in blends] == list(PERFECT_SYNC_NAMES) and {t for _, t in blends} == {"sf"}
    bone = next(p for a, _, p in msgs if a == "/VMC/Ext/Bone/Pos")
    root = next(p for a, _, p in msgs if a == "/VMC/Ext/Root/Pos")
    assert bone[0] == "Head" and root[0] == "root"
    assert np.linalg.norm(bone[4:8]) == pytest.approx(1.0, abs=1e-5)


def test_vmc_no_face_resets_blendshapes_and_reports_tracking_lost():
    msgs = messages_of(encode_vmc(face_record(0, found=False), 1.5, 1400))
    ok = next(p for a, _, p in msgs if a == "/VMC/Ext/OK")
    assert ok == [1, 3, 0, 0]
    assert all(p[1] == 0.0 for a, _, p in msgs if a == "/VMC/Ext/Blend/Val")
    assert not any(a == "/VMC/Ext/Bone/Pos" for a, _, _ in msgs)


def test_vmc_head_turn_maps_to_the_avatars_own_side():
    pose = HeadPose(rot_y(30.0), np.zeros(3, np.float32), 1.0, np.zeros(2, np.float32))  # turn to the subject's left
    x, y, z, w = unity_quaternion(pose.quaternion())
    # rotate Unity's forward (0, 0, 1) by (x, y, z, w): its x component
    fwd_x = 2 * (x * z + w * y)
    assert fwd_x < -0.45  # towards -x: the avatar's own left in Unity (x = avatar's right)
