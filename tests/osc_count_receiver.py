"""A stock python-osc receiver in its own process (as a user's would be): counts, per native frame,
the landmark and vertex chunks that arrived and the chunk counts its /face/end announced; prints one
JSON line when idle for `idle_s`. Used by tests/test_osc.py; not part of the app."""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer


def main(port: int, idle_s: float) -> None:
    chunks: dict[int, set] = defaultdict(set)
    ends: dict[int, tuple[int, int]] = {}
    last = [time.monotonic()]

    def chunk(address, fid, index, *rest):
        chunks[int(fid)].add((address, int(index)))
        last[0] = time.monotonic()

    def end(address, fid, n_lm, n_v):
        ends[int(fid)] = (int(n_lm), int(n_v))
        last[0] = time.monotonic()

    d = Dispatcher()
    d.map("/face/landmarks", chunk)
    d.map("/face/vertices", chunk)
    d.map("/face/end", end)
    server = BlockingOSCUDPServer(("127.0.0.1", port), d)  # stock: default socket buffer
    server.timeout = 0.2
    print("ready", flush=True)
    while time.monotonic() - last[0] < idle_s:
        server.handle_request()
    complete = sum(1 for fid, (n_lm, n_v) in ends.items()
                   if sum(a == "/face/landmarks" for a, _ in chunks[fid]) == n_lm
                   and sum(a == "/face/vertices" for a, _ in chunks[fid]) == n_v)
    print(json.dumps({"ends": len(ends), "complete": complete}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
