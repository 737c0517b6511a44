"""VMC protocol output (Performer → Marionette, https://protocol.vmc.info): head bone and Perfect
Sync blendshapes.

Per frame: `/VMC/Ext/OK iiii` (loaded, calibration state, calibration mode, tracking status — ints
by the spec), `/VMC/Ext/T f`, `/VMC/Ext/Root/Pos sfffffff`, `/VMC/Ext/Bone/Pos sfffffff` for `Head`,
then 52 × `/VMC/Ext/Blend/Val sf` and `/VMC/Ext/Blend/Apply`. All numbers other than OK's are float32
(Unity-side receivers drop doubles and ints there). Bundles of at most `mtu` bytes; Apply is last.
Positions in metres, rotations as Unity quaternions (x, y, z, w; left-handed, y up, z forward).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from pythonosc.parsing.osc_types import write_string

from realtime.osc.encode import floats, message, message_prefix, one_float_messages
from realtime.osc.names import PERFECT_SYNC_NAMES
from realtime.osc.template import FrameTemplate, TemplateBuilder
from realtime.record import FrameRecord

HEAD_LOCAL_POSITION_M: tuple[float, float, float] = (0.0, 0.1, 0.0)
"""Head bone local position sent with its rotation: a nominal neck→head offset. Receivers normally
apply bone positions only to Hips; this keeps the head in place for those that apply all of them."""
_HEAD_POSITION_F32 = np.asarray(HEAD_LOCAL_POSITION_M, dtype=np.float32)

CALIBRATED = 3  # VMC calibration state "Calibrated"
NORMAL_MODE = 0  # VMC calibration mode "normal"
ADDR_BLEND_VAL = "/VMC/Ext/Blend/Val"

_BLEND_VAL_PREFIXES: tuple[bytes, ...] = tuple(message_prefix(ADDR_BLEND_VAL, "sf") + write_string(name)
                                               for name in PERFECT_SYNC_NAMES)
"""`/VMC/Ext/Blend/Val`, ',sf' and the blendshape name of each Blend/Val message: the weight follows."""


def unity_quaternion(q_xyzw: np.ndarray) -> np.ndarray:
    """[4] head rotation (x, y, z, w) in our right-handed head axes (x = subject's left, y up,
    z forward) → the same motion in Unity's left-handed avatar axes (x = avatar's right): mirroring
    x maps the quaternion to (x, −y, −z, w). The avatar turns to its own left when the user does."""
    q = np.asarray(q_xyzw, dtype=np.float32)
    return np.array([q[0], -q[1], -q[2], q[3]], dtype=np.float32)


@lru_cache(maxsize=8)
def vmc_template(found: bool, mtu: int) -> FrameTemplate:
    """The datagrams of every VMC frame with (or without) a face: slots "time" [1] (s), "bone" [7]
    (Head local position m, then rotation x y z w) and "weights" [52] (Perfect Sync order)."""
    msgs: list[tuple[bytes, tuple[str, ...]]] = [
        (message("/VMC/Ext/OK", "iiii", [1, CALIBRATED, NORMAL_MODE, int(found)]), ()),
        (message("/VMC/Ext/T", "f", [0.0]), ("time",))]
    if found:
        msgs.append((message("/VMC/Ext/Root/Pos", "s" + "f" * 7, ["root", *floats([0, 0, 0, 0, 0, 0, 1])]), ()))
        msgs.append((message("/VMC/Ext/Bone/Pos", "s" + "f" * 7, ["Head", *[0.0] * 7]), ("bone",) * 7))
    zeros = np.zeros(len(PERFECT_SYNC_NAMES), np.float32)
    msgs += [(m, ("weights",)) for m in one_float_messages(_BLEND_VAL_PREFIXES, zeros)]
    msgs.append((message("/VMC/Ext/Blend/Apply"), ()))
    b = TemplateBuilder(mtu)
    b.bundles(msgs)
    return b.build()


def encode_vmc(rec: FrameRecord, time_s: float, mtu: int) -> list[bytes]:
    """The frame's VMC messages in bundles of at most `mtu` bytes (2 at 1,400 B). time_s:
    sender-relative time in seconds for `/VMC/Ext/T`. Without a face: OK with tracking status 0, T,
    and the blendshapes reset to 0 (then Apply)."""
    found = bool(rec.face_found and rec.pose is not None)
    floats_by_slot: dict[str, object] = {"time": time_s}
    if found:
        floats_by_slot["bone"] = np.concatenate([_HEAD_POSITION_F32, unity_quaternion(rec.pose.quaternion())])
        if rec.expressions is not None:
            weights = np.asarray(rec.expressions, dtype=np.float32).reshape(-1)
            if len(weights) != len(PERFECT_SYNC_NAMES):
                raise ValueError(f"expected {len(PERFECT_SYNC_NAMES)} expression weights, got {len(weights)}")
            floats_by_slot["weights"] = weights
    return vmc_template(found, int(mtu)).encode(floats=floats_by_slot)
