"""A stock python-osc receiver process for the soak test: counts FaceOSC `/found` frames, VMC
`/VMC/Ext/Blend/Apply` frames, or whole native frames (every chunk + /face/end), until idle."""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer


def main(port: int, fmt: str, idle_s: float) -> None:
    counts = defaultdict(int)
    chunks: dict[int, int] = defaultdict(int)
    ends: dict[int, int] = {}
    last = [time.monotonic()]

    def touch(*_args) -> None:  # handlers return None: python-osc 1.10 sends a handler's return value back
        last[0] = time.monotonic()

    def frame(*_args) -> None:
        counts["frames"] += 1
        touch()

    d = Dispatcher()
    if fmt == "faceosc":
        d.map("/found", frame)
    elif fmt == "vmc":
        d.map("/VMC/Ext/Blend/Apply", frame)
    else:
        def chunk(address, fid, *rest):
            chunks[int(fid)] += 1
            touch()

        def end(address, fid, n_lm, n_v):
            ends[int(fid)] = int(n_lm) + int(n_v)
            touch()

        d.map("/face/landmarks", chunk)
        d.map("/face/vertices", chunk)
        d.map("/face/end", end)
    d.set_default_handler(touch)
    server = BlockingOSCUDPServer(("127.0.0.1", port), d)
    server.max_packet_size = 65536
    server.timeout = 0.2
    print("ready", flush=True)
    while time.monotonic() - last[0] < idle_s:
        server.handle_request()
    if fmt == "native":
        counts["frames"] = len(ends)
        counts["complete"] = sum(1 for fid, n in ends.items() if chunks[fid] == n)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
