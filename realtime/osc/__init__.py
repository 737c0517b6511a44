"""OSC streaming: native schema, FaceOSC- and VMC-compatible output, a listener (docs/osc.md).

The formats (native, faceosc, vmc) are registered in `realtime.osc.formats.FORMATS`.
Entry points: `parse_target(text) -> OscTarget`, `OscSender(targets, mtu, topology=...)` with
`send(record)` / `close()`, and `run_listener(port, ...)` for `python main.py listen PORT`.
"""
from __future__ import annotations

from realtime.osc.formats import FORMATS, OscFormat
from realtime.osc.listener import FrameAssembler, NativeFrame, NativeListener, run_listener
from realtime.osc.names import ARKIT_NAMES, PERFECT_SYNC, PERFECT_SYNC_NAMES
from realtime.osc.native import Topology
from realtime.osc.sender import OscSender, SenderStats
from realtime.osc.targets import DEFAULT_PORTS, OscTarget, parse_target

__all__ = ["ARKIT_NAMES", "DEFAULT_PORTS", "FORMATS", "FrameAssembler", "NativeFrame", "NativeListener", "OscFormat",
           "OscSender", "OscTarget", "PERFECT_SYNC", "PERFECT_SYNC_NAMES", "SenderStats", "Topology", "parse_target",
           "run_listener"]
