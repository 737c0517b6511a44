"""Frame templates: the fixed byte layout of one frame's datagrams, filled with each frame's numbers.

For one format, MTU and frame shape (face or not, pose or not, vertex count...) every frame is sent
as the same datagrams with the same bytes except for its numbers: the frame id, the pose, the
weights, the mesh values. A `FrameTemplate` holds those datagrams back to back as one read-only
big-endian int32 buffer, written once by the ordinary encoders of `encode.py` (so every byte of
the layout is theirs), plus named *slots*, the positions of the numbers that change. Encoding a
frame is then a few numpy calls whatever its size: copy the buffer, write each slot group in one
assignment (int32 through the '>i4' buffer, float32 through a '>f4' view of it: a cast to float32
and a byte swap, as python-osc's struct packing does), `tobytes()`, slice it into datagrams.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from realtime.osc.encode import (BUNDLE_ELEMENT_OVERHEAD, BUNDLE_OVERHEAD, CHUNK_HEADER, bundle, bundle_groups,
                                 chunked, items_per_chunk, message_prefix)

Slots = Sequence[str]
"""Slot names of a message's trailing 4-byte arguments, one per argument ('' = constant)."""


@dataclass(frozen=True)
class RowRun:
    """`count` equal-sized datagrams back to back whose payloads carry consecutive rows of an array.

    start: word index of the first datagram; stride: words per datagram; skip: words before the
    payload in each (address, type tags, chunk header); first_row: the array row the first one
    starts at; rows_per: rows per datagram.
    """

    start: int
    stride: int
    count: int
    skip: int
    first_row: int
    rows_per: int

    def fill(self, words_f32: np.ndarray, rows: np.ndarray) -> None:
        """Write this run's rows of `rows` [N, width] into the frame's '>f4' word view."""
        block = words_f32[self.start:self.start + self.count * self.stride].reshape(self.count, self.stride)
        end = self.first_row + self.count * self.rows_per
        block[:, self.skip:] = rows[self.first_row:end].reshape(self.count, -1)


@dataclass(frozen=True)
class FrameTemplate:
    """A frame's datagrams as one buffer with slots (build it with `TemplateBuilder`).

    words: read-only big-endian int32 words of all datagrams back to back; bounds: (start, end)
    byte offsets of each datagram; slots: name → word indices [n] of that slot's numbers, in
    message order; runs: name → the `RowRun`s that carry an array's rows (float32 payloads).
    """

    words: np.ndarray
    bounds: tuple[tuple[int, int], ...]
    slots: Mapping[str, np.ndarray]
    runs: Mapping[str, tuple[RowRun, ...]]

    def encode(self, ints: Mapping[str, object] | None = None, floats: Mapping[str, object] | None = None,
               rows: Mapping[str, np.ndarray] | None = None) -> list[bytes]:
        """The frame's datagrams with these numbers written in.

        ints / floats: slot name → a value or an array of the slot's length (written as int32 /
        float32); rows: run name → [N, width] array, written as float32. A slot left out keeps the
        template's placeholder (zero). ValueError when a value does not fit its slot's shape.
        """
        words = self.words.copy()
        for name, value in (ints or {}).items():
            words[self.slots[name]] = value
        f32 = words.view(">f4")
        for name, value in (floats or {}).items():
            f32[self.slots[name]] = value
        for name, array in (rows or {}).items():
            for run in self.runs[name]:
                run.fill(f32, array)
        data = words.tobytes()
        return [data[a:b] for a, b in self.bounds]


class TemplateBuilder:
    """Builds a `FrameTemplate` from datagrams appended in send order, for datagrams of ≤ `mtu` bytes.

    Messages are given fully built (placeholder numbers, e.g. zeros) with the slot names of their
    trailing arguments: every argument handled by slots is a 4-byte number ('i' or 'f').
    """

    def __init__(self, mtu: int) -> None:
        self.mtu = int(mtu)
        self._parts: list[bytes] = []
        self._size = 0  # bytes so far
        self._slots: dict[str, list[int]] = {}
        self._runs: dict[str, list[RowRun]] = {}

    def _mark(self, end_byte: int, slots: Slots) -> None:
        """Record the slots of the arguments ending at byte `end_byte` of the buffer."""
        first = end_byte // 4 - len(slots)
        for k, name in enumerate(slots):
            if name:
                self._slots.setdefault(name, []).append(first + k)

    def _append(self, datagram: bytes) -> None:
        if len(datagram) > self.mtu:
            raise ValueError(f"a {len(datagram)} B datagram does not fit the {self.mtu} B MTU")
        self._parts.append(datagram)
        self._size += len(datagram)

    def bundles(self, messages: Sequence[tuple[bytes, Slots]]) -> None:
        """The messages in bundles of ≤ mtu bytes, grouped as `encode.pack_bundles` groups them."""
        for group in bundle_groups([len(m) for m, _ in messages], self.mtu):
            pos = self._size + BUNDLE_OVERHEAD
            for i in group:
                m, slots = messages[i]
                pos += BUNDLE_ELEMENT_OVERHEAD + len(m)
                self._mark(pos, slots)
            self._append(bundle([messages[i][0] for i in group]))

    def message(self, m: bytes, slots: Slots = ()) -> None:
        """One bare message as its own datagram."""
        self._append(m)
        self._mark(self._size, slots)

    def float_chunks(self, address: str, n_rows: int, width: int, ident_slot: str, run: str) -> int:
        """The chunk messages of an [n_rows, width] float32 array (`encode.chunked`): each chunk's
        id goes to `ident_slot`, the payloads become the row runs `run`. Returns the chunk count."""
        self._runs.setdefault(run, [])
        if n_rows == 0:
            return 0
        per = items_per_chunk(address, width, self.mtu)
        chunks = chunked(address, 0, np.zeros((n_rows, width), np.float32), "f", self.mtu)
        for k, c in enumerate(chunks):
            rows = min(per, n_rows - k * per)
            skip = len(message_prefix(address, CHUNK_HEADER + "f" * (rows * width))) // 4 + len(CHUNK_HEADER)
            start = self._size // 4
            self._slots.setdefault(ident_slot, []).append(start + skip - len(CHUNK_HEADER))
            runs = self._runs[run]
            last = runs[-1] if runs else None
            if last is not None and last.rows_per == rows and last.stride * 4 == len(c) \
                    and last.start + last.count * last.stride == start:
                runs[-1] = RowRun(last.start, last.stride, last.count + 1, skip, last.first_row, rows)
            else:
                runs.append(RowRun(start, len(c) // 4, 1, skip, k * per, rows))
            self._append(c)
        return len(chunks)

    def build(self) -> FrameTemplate:
        """The template of everything appended so far."""
        words = np.frombuffer(b"".join(self._parts), dtype=">i4").copy()
        words.flags.writeable = False
        ends = np.cumsum([len(p) for p in self._parts]).tolist()
        bounds = tuple(zip([0, *ends[:-1]], ends))
        return FrameTemplate(words, bounds, {k: np.asarray(v, dtype=np.intp) for k, v in self._slots.items()},
                             {k: tuple(v) for k, v in self._runs.items()})
