"""Expression names on the wire: ARKit camelCase (native) and Perfect Sync PascalCase (VMC).

The canonical tuple lives in `engine.expressions` (MediaPipe's blendshape order without `_neutral`,
then `tongueOut`); it is re-exported here so the OSC code and its documentation name one source.
"""
from __future__ import annotations

from engine.expressions import EXPRESSION_NAMES, PERFECT_SYNC_NAMES

ARKIT_NAMES: tuple[str, ...] = EXPRESSION_NAMES
"""The 52 ARKit / MediaPipe blendshape names, camelCase (`browDownLeft` … `jawOpen` … `tongueOut`)."""

PERFECT_SYNC: dict[str, str] = dict(zip(ARKIT_NAMES, PERFECT_SYNC_NAMES))
"""ARKit name → Perfect Sync (VRM / VMC) name: the same word in PascalCase (`jawOpen` → `JawOpen`)."""

__all__ = ["ARKIT_NAMES", "PERFECT_SYNC", "PERFECT_SYNC_NAMES"]
