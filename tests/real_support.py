"""The real clips of the real-face evaluation in tests: skipped, with the fix, where not fetched."""
from __future__ import annotations

from pathlib import Path

import pytest


def real_clip(name: str) -> Path:
    """The fetched clip `name` (realtime.realdata), or skip the test saying how to fetch it."""
    from realtime import realdata

    p = realdata.media_path(name)
    if not p.exists():
        pytest.skip(f"{p} is missing: fetch the real clips with `python main.py eval --real --fetch`")
    return p.resolve()


def tracked(name: str):
    """`realtime.realdata.tracked(name)` (cached tracking), or skip where the clip is missing."""
    from realtime import realdata

    real_clip(name)
    return realdata.tracked(name)
