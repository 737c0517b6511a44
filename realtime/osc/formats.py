"""The OSC output formats, in one registry: name → `OscFormat` (encoder, default port, topology, help).

`parse_target` (realtime/osc/targets.py) accepts exactly the names in `FORMATS` and takes their
default ports from here; `OscSender` encodes each frame once per format through `OscFormat.encode`
and sends the mesh topology only to formats with `needs_topology`; the `--osc` help and error texts
are built from the same entries. Adding a format is one entry in `FORMATS` (plus its encoder module
and its section in docs/osc.md).

An encoder is `encode(record, options, time_s) -> datagrams`: the frame (the sender's snapshot), the
sender's `EncodeOptions` and the sender-relative time in seconds; every datagram ≤ options.mtu bytes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from realtime.osc.faceosc import encode_faceosc
from realtime.osc.native import encode_frame
from realtime.osc.vmc import encode_vmc
from realtime.record import FrameRecord


@dataclass(frozen=True)
class EncodeOptions:
    """The sender's settings an encoder may read.

    mtu: largest datagram in bytes; faceosc_raw: FaceOSC's `/raw` points; mesh_every: the native
    dense mesh only in every Nth frame (frame id % N == 0).
    """

    mtu: int
    faceosc_raw: bool = False
    mesh_every: int = 1


Encoder = Callable[[FrameRecord, EncodeOptions, float], list[bytes]]
"""(record, options, sender-relative time in s) → the frame's datagrams in send order."""


@dataclass(frozen=True)
class OscFormat:
    """One OSC output format.

    name: the `FORMAT` of `--osc FORMAT@HOST:PORT` (lower case); encode: its `Encoder`;
    default_port: the port used when `--osc` names none; needs_topology: the destination gets the
    mesh topology (at start, on its `/face/topology/request`, periodically); description: one line
    for help texts.
    """

    name: str
    encode: Encoder
    default_port: int
    needs_topology: bool = False
    description: str = ""


def _encode_native(rec: FrameRecord, options: EncodeOptions, time_s: float) -> list[bytes]:
    if options.mesh_every > 1 and rec.frame_id % options.mesh_every and rec.vertices is not None:
        rec = dataclasses.replace(rec, vertices=None)
    return encode_frame(rec, options.mtu)


def _encode_faceosc(rec: FrameRecord, options: EncodeOptions, time_s: float) -> list[bytes]:
    return encode_faceosc(rec, options.mtu, raw=options.faceosc_raw)


def _encode_vmc(rec: FrameRecord, options: EncodeOptions, time_s: float) -> list[bytes]:
    return encode_vmc(rec, time_s, options.mtu)


FORMATS: dict[str, OscFormat] = {f.name: f for f in (
    OscFormat("native", _encode_native, 9000, needs_topology=True,
              description="this project's schema: pose, 52 weights, landmarks, dense mesh (docs/osc.md)"),
    OscFormat("faceosc", _encode_faceosc, 8338,
              description="FaceOSC-compatible: pose and gestures (FaceOSC's port)"),
    OscFormat("vmc", _encode_vmc, 39539,
              description="VMC protocol: head bone and Perfect Sync blendshapes (a Marionette's port)"),
)}
"""Every OSC format by name, in help-text order; the first is the default."""

DEFAULT_FORMAT = "native"
"""The format of an `--osc HOST:PORT` without `FORMAT@`."""

EXAMPLE_FORMAT = "faceosc"
"""The format shown in the `--osc` error text's example."""


def get_format(name: str) -> OscFormat:
    """The registered format `name` (case-insensitive); KeyError if there is none."""
    return FORMATS[name.lower()]


def format_names() -> str:
    """'native, faceosc, vmc': the registered names in order, for help and error texts."""
    return ", ".join(FORMATS)


def formats_help() -> str:
    """The `--osc` FORMAT help: 'FORMAT native (default), faceosc, vmc'."""
    return "FORMAT " + ", ".join(f"{n} (default)" if n == DEFAULT_FORMAT else n for n in FORMATS)
