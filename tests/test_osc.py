"""OSC streaming: target parsing, native encoding, real UDP send/receive on 127.0.0.1 (no mocks)."""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from scipy.spatial.transform import Rotation

from engine.errors import UserError
from realtime.osc import ARKIT_NAMES, NativeListener, OscSender, OscTarget, Topology, parse_target, run_listener
from realtime.osc import faceosc, native, vmc
from realtime.osc.encode import (bundle, chunked, float_array_message, items_per_chunk, message, message_prefix,
                                 one_float_messages, pack_bundles)
from realtime.osc.names import PERFECT_SYNC, PERFECT_SYNC_NAMES
from realtime.record import FrameRecord
from tests.osc_support import Capture, face_record, free_port, head_topology, messages_of, real_records

MODELS = Path(__file__).resolve().parent.parent / "models"


# ------------------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9000", OscTarget("native", "127.0.0.1", 9000)),
    ("faceosc@localhost:8338", OscTarget("faceosc", "localhost", 8338)),
    ("VMC@192.168.1.20:39540", OscTarget("vmc", "192.168.1.20", 39540)),
    ("vmc@studio-pc", OscTarget("vmc", "studio-pc", 39539)),
    ("faceosc", OscTarget("faceosc", "127.0.0.1", 8338)),
    ("native@[::1]:9001", OscTarget("native", "::1", 9001)),
])
def test_parse_target_accepts(text, expected):
    assert parse_target(text) == expected
    assert parse_target(str(expected)) == expected  # str() round-trips


@pytest.mark.parametrize("text", ["nonsense", "127.0.0.1", "midi@127.0.0.1:9000", "127.0.0.1:99999",
                                  "127.0.0.1:port", "a b:9000", "@host:1", "host:0", ""])
def test_parse_target_rejects_with_accepted_form(text):
    with pytest.raises(UserError) as e:
        parse_target(text)
    msg = str(e.value)
    assert "\n" not in msg and "HOST:PORT" in msg


def test_names_are_the_model_names_and_perfect_sync_is_pascal_case():
    head = np.load(MODELS / "head.npz")
    assert tuple(str(s) for s in head["expression_names"]) == ARKIT_NAMES
    assert len(set(ARKIT_NAMES)) == 52
    assert PERFECT_SYNC["browDownLeft"] == "BrowDownLeft"
    assert PERFECT_SYNC["jawOpen"] == "JawOpen" and PERFECT_SYNC["eyeBlinkLeft"] == "EyeBlinkLeft"


# ------------------------------------------------- python-osc reference encoders (slow and obvious)
def ref_message(address: str, types: str = "", values=()) -> bytes:
    """A message built by python-osc's OscMessageBuilder, one `add_arg` per value."""
    b = OscMessageBuilder(address)
    for t, v in zip(types, values, strict=True):
        b.add_arg(v, t)
    return b.build().dgram


def ref_bundle(messages: list[bytes]) -> bytes:
    """A bundle built by python-osc's OscBundleBuilder (time tag 'immediately')."""
    b = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        b.add_content(OscMessage(m))
    return b.build().dgram


def ref_pack(messages: list[bytes], mtu: int) -> list[bytes]:
    """Greedy in-order bundles: a bundle is 16 B + (4 B + size) per message and must stay ≤ mtu."""
    out, group, size = [], [], 16
    for m in messages:
        if group and size + 4 + len(m) > mtu:
            out.append(ref_bundle(group))
            group, size = [], 16
        group.append(m)
        size += 4 + len(m)
    return out + [ref_bundle(group)] if group else out


def _f32(values) -> list[float]:
    return np.asarray(values, dtype=np.float32).reshape(-1).tolist()


def ref_chunks(address: str, ident: int, arr: np.ndarray, kind: str, mtu: int) -> list[bytes]:
    """docs/osc.md's chunking: as many rows per message as fit in mtu, header iiiii, then the rows."""
    arr = np.asarray(arr).reshape(len(arr), -1)
    n, width = arr.shape

    def size(k: int) -> int:  # address and type tags NUL-terminated and padded to 4, then 4 B per value
        return 4 * (len(address) // 4 + 1) + 4 * ((6 + k * width) // 4 + 1) + 4 * (5 + k * width)

    per = max(k for k in range(1, mtu) if size(k) <= mtu)
    count = -(-n // per)
    values = arr.astype(np.float32) if kind == "f" else arr.astype(np.int32)
    return [ref_message(address, "iiiii" + kind * (len(rows) * width),
                        [ident, c, count, c * per, n, *rows.reshape(-1).tolist()])
            for c, rows in ((c, values[c * per:(c + 1) * per]) for c in range(count))]


def scipy_quaternion(rotation: np.ndarray) -> np.ndarray:
    """The reference (x, y, z, w) of a head rotation: scipy's, float32 as sent."""
    return Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_quat().astype(np.float32)


def ref_native(rec: FrameRecord, mtu: int) -> list[bytes]:
    """The native schema of docs/osc.md, every byte written by python-osc's builders."""
    fid, found = rec.frame_id & 0x7FFFFFFF, bool(rec.face_found)
    msgs = [ref_message("/face/found", "i", [int(found)]),
            ref_message("/face/frame", "ii", [fid, rec.timestamp_ms & 0x7FFFFFFF])]
    if found and rec.pose is not None:
        p = rec.pose
        msgs += [ref_message("/face/pose/position", "fff", _f32(p.translation_mm)),
                 ref_message("/face/pose/quaternion", "ffff", _f32(scipy_quaternion(p.rotation))),
                 ref_message("/face/pose/matrix", "f" * 16, _f32(p.matrix())),
                 ref_message("/face/pose/euler", "fff", _f32(p.euler_xyz_rad())),
                 ref_message("/face/pose/scale", "f", _f32([p.scale_px_per_mm])),
                 ref_message("/face/pose/center", "ff", _f32(p.center_px))]
    if found and rec.expressions is not None:
        w = _f32(rec.expressions)
        msgs.append(ref_message("/face/blend", "f" * len(w), w))
        msgs += [ref_message(f"/face/blend/{name}", "f", [v]) for name, v in zip(ARKIT_NAMES, w)]
    lm = vx = []
    if found and rec.landmarks_px is not None:
        lm = ref_chunks("/face/landmarks", fid, rec.landmarks_px, "f", mtu)
    if found and rec.vertices is not None:
        vx = ref_chunks("/face/vertices", fid, rec.vertices, "f", mtu)
    return ref_pack(msgs, mtu) + lm + vx + [ref_message("/face/end", "iii", [fid, len(lm), len(vx)])]


def ref_faceosc(rec: FrameRecord, mtu: int, raw: bool) -> list[bytes]:
    """FaceOSC's bundle (docs/osc.md) from the value functions of realtime.osc.faceosc, built by python-osc."""
    if not rec.face_found or rec.pose is None or rec.landmarks_px is None:
        return ref_pack([ref_message("/found", "i", [0])], mtu)
    s = rec.pose.scale_px_per_mm
    msgs = [ref_message("/found", "i", [1]),
            ref_message("/pose/position", "ff", _f32(faceosc.position(rec.landmarks_px))),
            ref_message("/pose/scale", "f", _f32([s * faceosc.FACEOSC_MM_PER_UNIT])),
            ref_message("/pose/orientation", "fff", _f32(faceosc.orientation(rec.pose.rotation)))]
    msgs += [ref_message(a, "f", _f32([v])) for a, v in faceosc.gestures(rec.landmarks_px, s).items()]
    if raw:
        msgs.append(ref_message("/raw", "f" * 132, _f32(faceosc.raw_points(rec.landmarks_px))))
    return ref_pack(msgs, mtu)


def ref_vmc(rec: FrameRecord, time_s: float, mtu: int) -> list[bytes]:
    """The VMC messages of docs/osc.md, built by python-osc."""
    found = bool(rec.face_found and rec.pose is not None)
    msgs = [ref_message("/VMC/Ext/OK", "iiii", [1, vmc.CALIBRATED, vmc.NORMAL_MODE, int(found)]),
            ref_message("/VMC/Ext/T", "f", _f32([time_s]))]
    if found:
        q = vmc.unity_quaternion(scipy_quaternion(rec.pose.rotation))
        msgs.append(ref_message("/VMC/Ext/Root/Pos", "sfffffff", ["root", *_f32([0, 0, 0, 0, 0, 0, 1])]))
        msgs.append(ref_message("/VMC/Ext/Bone/Pos", "sfffffff", ["Head", *_f32([*vmc.HEAD_LOCAL_POSITION_M, *q])]))
    w = _f32(rec.expressions) if found and rec.expressions is not None else [0.0] * 52
    msgs += [ref_message("/VMC/Ext/Blend/Val", "sf", [name, v]) for name, v in zip(PERFECT_SYNC_NAMES, w)]
    msgs.append(ref_message("/VMC/Ext/Blend/Apply"))
    return ref_pack(msgs, mtu)


def real_frame_variants() -> list[FrameRecord]:
    """Real frames plus the cases the encoders branch on: no face, no pose, no weights, no vertices,
    non-finite and signed-zero values, a frame id and timestamp past 2³¹ (wrapped on the wire)."""
    recs = real_records()
    odd = recs[4].vertices.copy()
    odd[[0, 7, 100]] = [[np.nan, np.inf, -np.inf], [-0.0, 0.0, 1e-45], [3.4e38, -3.4e38, 1e-38]]
    return [*recs[:6], replace(recs[6], face_found=False, landmarks_px=None, pose=None, vertices=None, expressions=None),
            replace(recs[7], pose=None), replace(recs[8], expressions=None), replace(recs[9], vertices=None),
            replace(recs[10], vertices=odd), replace(recs[11], frame_id=2 ** 31 + 5, timestamp_ms=2 ** 32 + 7)]


# ----------------------------------------------------------------------------------------- encoding
def test_message_bytes_equal_python_osc_builder():
    values = [7, -3, 1.25, float("inf"), "Head", 0.1, 2 ** 31 - 1]
    types = "iiffsfi"
    b = OscMessageBuilder("/x/yz")
    for t, v in zip(types, values):
        b.add_arg(v, t)
    assert message("/x/yz", types, values) == b.build().dgram
    assert message("/VMC/Ext/Blend/Apply") == OscMessageBuilder("/VMC/Ext/Blend/Apply").build().dgram
    for address in ("/abc", "/abcd", "/abcdefg"):  # every padding length
        for n in (0, 1, 2, 3, 4, 52):
            vals = np.random.default_rng(n).normal(size=n).astype(np.float32).tolist()
            assert message(address, "f" * n, vals) == ref_message(address, "f" * n, vals)
            assert float_array_message(address, vals) == ref_message(address, "f" * n, vals)


@pytest.mark.slow
def test_numpy_built_families_and_bundles_equal_python_osc():
    w = real_records()[0].expressions
    prefixes = [message_prefix(f"/face/blend/{n}", "f") for n in ARKIT_NAMES]
    assert one_float_messages(prefixes, w) == [ref_message(f"/face/blend/{n}", "f", [v])
                                               for n, v in zip(ARKIT_NAMES, _f32(w))]
    with pytest.raises(ValueError):
        one_float_messages(prefixes, w[:51])
    msgs = [ref_message("/a", "i", [1]), ref_message("/bcd", "ff", [0.5, -2.0]), ref_message("/VMC/Ext/Blend/Apply")]
    assert bundle(msgs) == ref_bundle(msgs) and bundle(msgs[:1]) == ref_bundle(msgs[:1])


@pytest.mark.slow
@pytest.mark.parametrize("mtu", [512, 1400, 1500, 9000, 65507])
def test_native_frames_equal_python_osc_on_real_frames(mtu):
    rec = real_records()[12]
    per = items_per_chunk("/face/vertices", 3, mtu)
    cut = [replace(rec, vertices=rec.vertices[:n], landmarks_px=rec.landmarks_px[:max(1, n // 2)])
           for n in sorted({1, per - 1, per, per + 1, 2 * per}) if n <= len(rec.vertices)]  # every chunk-run shape
    for r in real_frame_variants() + cut:
        assert native.encode_frame(r, mtu) == ref_native(r, mtu), (r.frame_id, mtu)
    template = native.frame_template(True, True, True, 478, 3260, mtu)
    assert not template.words.flags.writeable  # shared by every frame (and thread): never written


@pytest.mark.slow
@pytest.mark.parametrize("mtu", [512, 1400, 65507])
def test_faceosc_and_vmc_equal_python_osc_on_real_frames(mtu):
    for rec in real_frame_variants():
        for raw in (False, True) if mtu >= 1400 else (False,):  # /raw alone is 572 B
            assert faceosc.encode_faceosc(rec, mtu, raw=raw) == ref_faceosc(rec, mtu, raw), (rec.frame_id, raw)
        for time_s in (0.0, 1.0 / 3.0, 12345.678):
            assert vmc.encode_vmc(rec, time_s, mtu) == ref_vmc(rec, time_s, mtu), (rec.frame_id, time_s)


@pytest.mark.slow
@pytest.mark.parametrize("mtu", [512, 1400, 8192])
def test_chunks_equal_python_osc_at_chunk_boundaries(mtu):
    verts = real_records()[0].vertices
    tri, uvs = head_topology()
    per = items_per_chunk("/face/vertices", 3, mtu)
    for n in sorted({1, 2, per - 1, per, per + 1, 2 * per, 3 * per - 1, 3 * per + 1, len(verts)}):
        assert chunked("/face/vertices", 77, verts[:n], "f", mtu) == ref_chunks("/face/vertices", 77, verts[:n], "f", mtu)
        assert chunked("/face/topology/triangles", 2 ** 31 - 1, tri[:n], "i", mtu) == \
            ref_chunks("/face/topology/triangles", 2 ** 31 - 1, tri[:n], "i", mtu)
    assert chunked("/face/vertices", 0, verts.astype(np.float64), "f", mtu) == chunked("/face/vertices", 0, verts, "f", mtu)
    topo = Topology.of((tri, uvs))
    tid = topo.topology_id
    assert native.encode_topology(topo, mtu) == [
        ref_message("/face/topology/info", "iiii", [tid, len(uvs), len(tri), 1]),
        *ref_chunks("/face/topology/triangles", tid, tri, "i", mtu), *ref_chunks("/face/topology/uvs", tid, uvs, "f", mtu)]


def test_pack_bundles_fills_bundles_in_order_up_to_the_mtu():
    rng = np.random.default_rng(3)
    msgs = [ref_message(f"/m{i}", "f" * int(k), [0.5] * int(k)) for i, k in enumerate(rng.integers(0, 60, 80))]
    for mtu in (320, 512, 1400, 65507):  # the largest message is 296 B
        assert pack_bundles(msgs, mtu) == ref_pack(msgs, mtu)
    assert pack_bundles([], 512) == []
    with pytest.raises(ValueError, match="does not fit"):
        pack_bundles(msgs[:1] + [ref_message("/big", "f" * 200, [0.0] * 200)], 512)


@pytest.mark.slow
def test_sender_puts_python_osc_bytes_on_the_wire():
    recs = real_records()[:3]
    cap = Capture()
    with OscSender([parse_target(f"native@127.0.0.1:{cap.port}")], mtu=1400) as s:
        for r in recs:
            s.send(r)
            time.sleep(0.02)
    got = cap.wait_quiet()
    assert s.stats.dropped == 0 and s.stats.failed == 0
    assert got == [d for r in recs for d in ref_native(r, 1400)]
    assert s.stats.bytes == sum(map(len, got)) and s.stats.datagrams == len(got)


@pytest.mark.parametrize("mtu", [512, 1400, 1536, 8192])
def test_chunks_fit_the_mtu_tightly_and_cover_the_array(mtu):
    arr = np.arange(3260 * 3, dtype=np.float32).reshape(-1, 3)
    chunks = chunked("/face/vertices", 9, arr, "f", mtu)
    assert all(len(c) <= mtu for c in chunks)
    assert len(chunks[0]) > mtu - 16  # one more vertex (12 B data + ≤4 B tag) would not fit
    got = np.concatenate([np.asarray(OscPacket(c).messages[0].message.params[5:], np.float32) for c in chunks])
    np.testing.assert_array_equal(got.reshape(-1, 3), arr)


def test_bad_mtu_is_a_user_error():
    with pytest.raises(UserError, match="--osc-mtu"):
        OscSender([parse_target("127.0.0.1:9")], mtu=100)


# ------------------------------------------------------------------------------------- real sockets
@pytest.mark.parametrize("mtu", [512, 1400])
def test_every_native_datagram_fits_the_mtu_and_uses_int32_float32_only(mtu):
    cap = Capture()
    with OscSender([parse_target(f"native@127.0.0.1:{cap.port}")], mtu=mtu, topology=head_topology()) as s:
        s.send(face_record(0))
        s.send(face_record(1, found=False))
    dgrams = cap.wait_quiet()
    assert s.error is None and s.stats.failed == 0
    assert len(dgrams) == s.stats.datagrams > 0
    assert max(len(d) for d in dgrams) <= mtu
    msgs = messages_of(dgrams)
    assert set("".join(t for _, t, _ in msgs)) <= {"i", "f"}
    addresses = {a for a, _, _ in msgs}
    assert {"/face/found", "/face/frame", "/face/pose/position", "/face/pose/quaternion", "/face/pose/matrix",
            "/face/blend", "/face/blend/jawOpen", "/face/landmarks", "/face/vertices", "/face/end",
            "/face/topology/info", "/face/topology/triangles", "/face/topology/uvs"} <= addresses
    # every chunk carries frame id, chunk index and chunk count
    for a, t, p in msgs:
        if a in ("/face/landmarks", "/face/vertices"):
            assert t.startswith("iiiii") and p[0] == 0 and 0 <= p[1] < p[2]


def test_listener_reassembles_what_was_sent():
    recs = [face_record(i, yaw_deg=5.0 * i) for i in range(3)] + [face_record(3, found=False)]
    tri, uvs = head_topology()
    with NativeListener(0) as listener:
        with OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=(tri, uvs)) as sender:
            for r in recs:
                sender.send(r)
                time.sleep(0.01)
            frames = list(listener.frames(count=4, timeout_s=5.0))
        assert sender.error is None
        assert [f.frame_id for f in frames] == [0, 1, 2, 3]
        assert all(f.complete for f in frames)
        for f, r in zip(frames[:3], recs):
            assert f.found and f.timestamp_ms == r.timestamp_ms
            np.testing.assert_array_equal(f.vertices, r.vertices)
            np.testing.assert_array_equal(f.landmarks_px, r.landmarks_px)
            np.testing.assert_array_equal(f.expressions, r.expressions)
            assert f.named_expressions["jawOpen"] == pytest.approx(float(r.expressions[ARKIT_NAMES.index("jawOpen")]))
            np.testing.assert_allclose(f.matrix, r.pose.matrix(), atol=1e-6)
            np.testing.assert_allclose(f.quaternion, r.pose.quaternion(), atol=1e-6)
            np.testing.assert_allclose(f.position_mm, r.pose.translation_mm)
        assert not frames[3].found and frames[3].vertices is None
        topo = listener.topology
        assert topo is not None and topo.n_vertices == len(uvs)
        np.testing.assert_array_equal(topo.triangles, tri)
        np.testing.assert_array_equal(topo.uvs, uvs)


def test_listener_that_missed_the_topology_requests_it():
    tri, uvs = head_topology()
    with NativeListener(0) as listener:
        with OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=(tri, uvs),
                       topology_interval_s=0) as sender:
            t_end = time.perf_counter() + 5
            while sender.stats.topology_sends < 1 and time.perf_counter() < t_end:
                time.sleep(0.01)
            time.sleep(0.2)
            listener.sock.settimeout(0.2)  # throw the initial topology away, as a late receiver would
            try:
                while True:
                    listener.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                pass
            sender.send(face_record(0))
            assert len(list(listener.frames(count=1, timeout_s=5.0))) == 1
            assert listener.topology is None
            for i in range(1, 4):  # the request went out; keep streaming until the topology is back
                sender.send(face_record(i))
                list(listener.frames(count=1, timeout_s=2.0))
                if listener.topology is not None:
                    break
        assert sender.stats.topology_sends >= 2
        np.testing.assert_array_equal(listener.topology.triangles, tri)


def test_several_destinations_each_get_their_format():
    caps = {fmt: Capture() for fmt in ("native", "faceosc", "vmc")}
    targets = [parse_target(f"{fmt}@127.0.0.1:{c.port}") for fmt, c in caps.items()]
    with OscSender(targets, topology=None) as s:
        for i in range(3):
            s.send(face_record(i))
    got = {fmt: messages_of(c.wait_quiet()) for fmt, c in caps.items()}
    assert s.stats.frames == 3
    assert {a for a, _, _ in got["native"]} >= {"/face/vertices", "/face/found"}
    assert sum(a == "/found" for a, _, _ in got["faceosc"]) == 3
    assert sum(a == "/VMC/Ext/Blend/Apply" for a, _, _ in got["vmc"]) == 3


def test_absent_receiver_never_raises_nor_stalls(caplog):
    closed = free_port()  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="realtime.osc.sender"):
        s = OscSender([parse_target(f"127.0.0.1:{closed}"), parse_target(f"vmc@127.0.0.1:{closed}")],
                      topology=head_topology())
        for i in range(20):
            s.send(face_record(i))
            time.sleep(0.005)
        s.close()
        s.close()  # idempotent
    assert s.error is None
    assert s.stats.frames + s.stats.dropped == 20 and s.stats.frames > 0
    assert sum("OSC destination" in r.message for r in caplog.records) <= 2  # at most once per destination


def test_unreachable_host_warns_at_most_once_and_keeps_running(caplog):
    with caplog.at_level(logging.WARNING, logger="realtime.osc.sender"):
        with OscSender([parse_target("native@192.0.2.1:9000")]) as s:  # TEST-NET-1: never routed
            for i in range(5):
                s.send(face_record(i))
                time.sleep(0.01)
    assert s.error is None and s.stats.frames + s.stats.dropped == 5
    assert sum("OSC destination" in r.message for r in caplog.records) <= 1


def test_send_never_blocks_and_drops_the_oldest():
    cap = Capture()
    rec = face_record(0)
    s = OscSender([parse_target(f"127.0.0.1:{cap.port}")], queue_size=2)
    t0 = time.perf_counter()
    for i in range(200):
        rec.frame_id = i
        s.send(rec)
    caller_s = time.perf_counter() - t0
    s.close()
    cap.wait_quiet()
    assert caller_s < 1.0  # 200 enqueues; encoding 200 frames would take ~1 s of CPU
    assert s.stats.enqueued == 200 and s.stats.dropped > 0
    assert s.stats.frames + s.stats.dropped == 200
    ids = sorted({p[0] for a, _, p in messages_of(cap.datagrams) if a == "/face/end"})
    assert ids[-1] == 199  # the newest frame always survives
    s.send(rec)  # after close: ignored, no error
    assert s.stats.enqueued == 200


def test_listener_on_a_port_in_use_names_the_port():
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with pytest.raises(UserError, match=f"port {port}") as e:
            NativeListener(port)
        assert "\n" not in str(e.value)
    finally:
        busy.close()


def test_run_listener_prints_and_saves(tmp_path):
    port = free_port()
    out = tmp_path / "frames.npz"
    lines: list[str] = []
    result: dict = {}

    def listen():
        result["frames"] = run_listener(port, out_path=out, count=3, timeout_s=5.0, echo=lines.append)

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(0.3)
    recs = [face_record(i) for i in range(3)]
    with OscSender([parse_target(f"127.0.0.1:{port}")], topology=head_topology()) as s:
        for r in recs:
            s.send(r)
            time.sleep(0.02)
    t.join(timeout=10)
    assert not t.is_alive() and len(result["frames"]) == 3
    assert lines[0].startswith("listening") and lines[-1].startswith("saved 3 frames")
    z = np.load(out)
    assert z["vertices"].shape == (3, *recs[0].vertices.shape)
    np.testing.assert_array_equal(z["vertices"][2], recs[2].vertices)
    np.testing.assert_array_equal(z["frame_id"], [0, 1, 2])
    assert z["complete"].all() and "triangles" in z.files


def test_run_listener_missing_output_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_listener(free_port(), out_path=tmp_path / "nope" / "f.npz", count=1, timeout_s=0.1, echo=None)


def test_unresolvable_host_is_a_user_error():
    with pytest.raises(UserError, match="cannot resolve OSC host"):
        OscSender([parse_target("127.0.0.1:9000"), parse_target("no-such-host.invalid:9000")])


def _fuzz_datagrams(rng: np.random.Generator, n: int) -> list[bytes]:
    """Random, truncated and malicious datagrams: non-UTF-8 addresses, wrong type tags, bundles with
    negative or huge element sizes, deep nesting, valid messages cut short."""
    good = OscMessageBuilder("/face/request_topology").build().dgram
    out = [b"\xff\xfe\x80garbage\x00\x00\x00\x00",  # the 12-byte non-UTF-8 datagram of issue #13
           b"#bundle\x00" + b"\x00" * 8 + b"\xff\xff\xff\xfc",  # element size -4
           b"#bundle\x00" + b"\x00" * 8 + b"\x7f\xff\xff\xff" + b"x" * 8,  # element size 2 GB
           (b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x00\x10") * 200,  # nested bundles
           b"", good[:5], b"/face\x00\x00\x00,ffff\x00\x00\x00"]
    while len(out) < n:
        k = int(rng.integers(0, 4))
        if k == 0:
            out.append(rng.bytes(int(rng.integers(1, 200))))
        elif k == 1:
            out.append(good[:int(rng.integers(0, len(good)))] + rng.bytes(int(rng.integers(0, 8))))
        elif k == 2:
            out.append(b"/" + rng.bytes(7) + b"\x00,s\x00\x00" + rng.bytes(16))
        else:
            out.append(b"#bundle\x00" + rng.bytes(8) + rng.bytes(4) + rng.bytes(int(rng.integers(0, 64))))
    return out


def test_sender_survives_anything_sent_back_to_its_sockets(caplog):
    """10,000 hostile datagrams from the receiver's own address (the only one that can reach a
    connected socket) to every sending socket: the sender thread lives, frames keep arriving, the
    junk is counted and warned about once, and a real topology request is still honoured."""
    tri, uvs = head_topology()
    rng = np.random.default_rng(13)
    junk = _fuzz_datagrams(rng, 10_000)
    with NativeListener(0) as listener, caplog.at_level(logging.WARNING, logger="realtime.osc.sender"):
        sender = OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=(tri, uvs),
                           topology_interval_s=0)
        port = sender.local_ports()[0]
        before = sender.stats.topology_sends
        for i, d in enumerate(junk):
            listener.sock.sendto(d, ("127.0.0.1", port))
            if i % 500 == 0:
                sender.send(face_record(i // 500))
                sender.check()
                time.sleep(0.002)
        listener.sock.sendto(OscMessageBuilder("/face/request_topology").build().dgram, ("127.0.0.1", port))
        t_end = time.perf_counter() + 5
        while sender.stats.topology_sends <= before and time.perf_counter() < t_end:
            sender.send(face_record(99))
            time.sleep(0.02)
        sender.check()
        sender.close()
    assert sender.stats.thread_errors == 0 and sender.stats.frames > 0
    assert sender.stats.topology_sends > before  # the real request after the flood still works
    assert sender.stats.ignored > 0
    assert sum("ignored" in r.getMessage() for r in caplog.records) <= 2  # rate-limited, not one per datagram


def test_datagrams_from_elsewhere_never_reach_the_sending_socket():
    """The sending socket is connected to its destination: another host/port cannot feed it."""
    with NativeListener(0) as listener:
        with OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=None) as sender:
            port = sender.local_ports()[0]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                for _ in range(50):
                    stranger.sendto(b"\xff" * 12, ("127.0.0.1", port))
            sender.send(face_record(0))
            time.sleep(0.3)
            sender.send(face_record(1))
            time.sleep(0.1)
        assert sender.stats.ignored == 0 and sender.stats.thread_errors == 0


def test_a_failing_sender_thread_survives_and_a_dead_one_is_an_error(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the deliberate death below
    with NativeListener(0) as listener:
        sender = OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=None)

        def fails():
            raise ValueError("an iteration fails")

        sender._run_once = fails  # noqa: SLF001 - what no handler inside an iteration expects
        time.sleep(0.2)
        sender.check()  # still alive: the error was logged and counted
        assert sender.stats.thread_errors >= 1 and isinstance(sender.error, ValueError)

        def dies():
            raise SystemExit  # not an Exception: the thread ends

        sender._run_once = dies  # noqa: SLF001
        sender._thread.join(2)  # noqa: SLF001
        with pytest.raises(RuntimeError, match="OSC sender thread stopped"):
            sender.check()
        sender.close()


def test_assembler_survives_the_fuzz_and_still_assembles_real_frames():
    """The classes of issue #13 (non-UTF-8, bundle element −4, 3,000-deep nesting, a 1e8-row total,
    100 blend values, truncations) plus random bytes: no exception, no endless loop, bounded memory,
    and the real frames sent afterwards come out whole."""
    import tracemalloc

    from realtime.osc.listener import MAX_PENDING_FRAMES, FrameAssembler, describe

    rng = np.random.default_rng(9)
    junk = _fuzz_datagrams(rng, 10_000)
    deep = b"".join(b"#bundle\x00" + b"\x00" * 8 + (len(junk[0]) + 16 * (3000 - i)).to_bytes(4, "big")
                    for i in range(3000)) + junk[0]
    huge = OscMessageBuilder(native.ADDR_VERTICES)
    for v in (1, 0, 1, 0, 100_000_000, 1.0, 2.0, 3.0):
        huge.add_arg(v)
    blend = OscMessageBuilder(native.ADDR_BLEND)
    for _ in range(100):
        blend.add_arg(0.5)
    frame_hdr = OscMessageBuilder(native.ADDR_FRAME)
    frame_hdr.add_arg(7)
    frame_hdr.add_arg(0)
    junk += [deep, huge.build().dgram, frame_hdr.build().dgram, blend.build().dgram]
    asm = FrameAssembler()
    tracemalloc.start()
    t0 = time.perf_counter()
    for d in junk:
        for f in asm.feed(d):
            describe(f)  # printing what came out never fails either
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 60.0  # it ends (python-osc alone spins forever on the −4 element)
    assert peak < 64 << 20, peak  # the 1e8-row total was refused before allocating 1.2 GB
    assert asm.bad_datagrams > 9_000 and asm.pending <= MAX_PENDING_FRAMES
    tri, uvs = head_topology()
    recs = [face_record(i + 100) for i in range(3)]
    got = []
    for d in native.encode_topology(Topology.of((tri, uvs)), 1400):
        asm.feed(d)
    for r in recs:
        for d in native.encode_frame(r, 1400):
            got += asm.feed(d)
    assert [f.frame_id for f in got if f.complete][-3:] == [100, 101, 102]
    np.testing.assert_array_equal(got[-1].vertices, recs[-1].vertices)


def test_a_flood_of_unfinished_frames_keeps_memory_flat():
    """20,000 one-chunk frames that never end (each a new frame id): at most MAX_PENDING_FRAMES stay."""
    from realtime.osc.listener import MAX_PENDING_FRAMES, FrameAssembler

    asm = FrameAssembler()
    for fid in range(20_000):
        b = OscMessageBuilder(native.ADDR_LANDMARKS)
        for v in (fid, 0, 1, 0, 478, 1.0, 2.0, 3.0):
            b.add_arg(v)
        asm.feed(b.build().dgram)
    assert asm.pending <= MAX_PENDING_FRAMES and asm.dropped_frames >= 20_000 - MAX_PENDING_FRAMES
    assert len(asm._arrays) <= MAX_PENDING_FRAMES  # noqa: SLF001 - the buffers went with their frames


def test_listener_socket_survives_hostile_datagrams():
    rng = np.random.default_rng(5)
    with NativeListener(0) as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in _fuzz_datagrams(rng, 2_000):
                if d:
                    s.sendto(d[:65000], ("127.0.0.1", listener.port))
            with OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=head_topology()) as sender:
                for i in range(3):
                    sender.send(face_record(i))
                    time.sleep(0.02)
                frames = []
                t_end = time.perf_counter() + 10
                while len([f for f in frames if f.complete]) < 3 and time.perf_counter() < t_end:
                    frames += listener.receive(timeout_s=1.0)
    assert [f.frame_id for f in frames if f.complete][-3:] == [0, 1, 2]


@pytest.mark.slow
def test_a_stock_python_osc_receiver_gets_whole_native_frames_at_30_fps():
    """150 real-size native frames at 30 FPS to python-osc's own BlockingOSCUDPServer in another
    process, default socket buffers: at least 99 % arrive complete (every chunk)."""
    import json
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("osc_count_receiver.py")), str(port), "2.0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    recs = [face_record(i) for i in range(150)]
    with OscSender([parse_target(f"127.0.0.1:{port}")], topology=None) as s:
        t0 = time.perf_counter()
        for i, r in enumerate(recs):
            s.send(r)
            time.sleep(max(0.0, t0 + (i + 1) / 30 - time.perf_counter()))
    out = json.loads(proc.stdout.readline())
    proc.wait(10)
    assert s.stats.frames == 150 and s.stats.datagrams / 150 > 40  # real-size frames
    assert out["complete"] >= 0.99 * 150, out


def test_mesh_every_n_frames_is_the_compact_native_stream():
    """--osc-mesh-every 3: the weights, pose and landmarks in every frame, the mesh in every third;
    a listener gets whole frames either way (the skipped ones announce no vertex chunk)."""
    with NativeListener(0) as listener:
        with OscSender([parse_target(f"127.0.0.1:{listener.port}")], topology=None, mesh_every=3) as s:
            for i in range(6):
                s.send(face_record(i))
                time.sleep(0.02)
            frames = list(listener.frames(count=6, timeout_s=5.0))
    assert [f.frame_id for f in frames] == list(range(6)) and all(f.complete for f in frames)
    assert [f.vertices is not None for f in frames] == [True, False, False, True, False, False]
    assert all(f.expressions is not None and f.landmarks_px is not None for f in frames)
    full, compact = frames[0].chunks_expected, frames[1].chunks_expected
    assert compact[1] == 0 and full[1] > 20
    with pytest.raises(UserError, match="at least 1"):
        OscSender([parse_target("127.0.0.1:9")], mesh_every=0)


PD_PATCH = """#N canvas 0 50 450 300 12;
#X obj 20 20 netreceive -u -b {port};
#X obj 20 50 oscparse;
#X obj 20 80 route face;
#X obj 20 110 route end vertices;
#X obj 20 140 t b;
#X obj 20 170 f;
#X obj 60 170 + 1;
#X obj 20 200 f;
#X obj 150 140 t b;
#X obj 150 170 f;
#X obj 190 170 + 1;
#X obj 150 200 f;
#X obj 300 20 loadbang;
#X obj 300 50 delay {quit_ms};
#X msg 300 80 \\; pd quit;
#X obj 20 65 list trim;
#X obj 300 110 delay {report_ms};
#X obj 20 230 print ENDS;
#X obj 150 230 print VERTS;
#X obj 300 140 t b b;
#X connect 0 0 1 0;
#X connect 1 0 15 0;
#X connect 15 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 4 0 5 0;
#X connect 5 0 6 0;
#X connect 6 0 5 1;
#X connect 6 0 7 1;
#X connect 3 1 8 0;
#X connect 8 0 9 0;
#X connect 9 0 10 0;
#X connect 10 0 9 1;
#X connect 10 0 11 1;
#X connect 12 0 13 0;
#X connect 13 0 14 0;
#X connect 12 0 16 0;
#X connect 16 0 19 0;
#X connect 19 0 7 0;
#X connect 19 1 11 0;
#X connect 7 0 17 0;
#X connect 11 0 18 0;
"""
"""A Pure Data patch: [netreceive -u -b] → [oscparse] → counts of /face/end and /face/vertices,
printed once, just before the patch quits itself (printing every message would slow Pd down)."""


@pytest.mark.slow
def test_pure_data_netreceive_gets_whole_native_frames_at_30_fps(tmp_path):
    """Pd's own [netreceive -u -b] → [oscparse] (default socket buffer, Pd's scheduler polling it),
    counting /face/end and /face/vertices over 300 frames (10 s): ≥ 99 % of the frames and of their
    vertex chunks arrive (measured here: all but one frame's worth)."""
    import re
    import shutil
    import subprocess

    pd = shutil.which("pd")
    if pd is None:
        pytest.skip("Pure Data is not installed (Debian: apt-get install puredata-core; make install does it)")
    port = free_port()
    patch = tmp_path / "count.pd"
    patch.write_text(PD_PATCH.format(port=port, quit_ms=14000, report_ms=13500))  # Pd quits by itself (flushing its prints)
    proc = subprocess.Popen([pd, "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(patch)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1.5)  # Pd opens the patch and binds the port
        recs = [face_record(i) for i in range(300)]
        with OscSender([parse_target(f"127.0.0.1:{port}")], topology=None) as s:
            t0 = time.perf_counter()
            for i, r in enumerate(recs):
                s.send(r)
                time.sleep(max(0.0, t0 + (i + 1) / 30 - time.perf_counter()))
    finally:
        err = proc.communicate(timeout=30)[1]
    ends = [int(float(v)) for v in re.findall(r"ENDS: ([\d.]+)", err)]
    verts = [int(float(v)) for v in re.findall(r"VERTS: ([\d.]+)", err)]
    n_vertex_chunks = sum(1 for d in native.encode_frame(recs[0], 1400) if d.startswith(b"/face/vertices"))
    assert n_vertex_chunks > 20
    assert ends and ends[-1] >= 0.99 * 300, err[-500:]
    assert verts and verts[-1] >= 0.99 * 300 * n_vertex_chunks, (verts[-1:], 300 * n_vertex_chunks)
