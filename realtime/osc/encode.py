"""OSC datagram building, byte for byte as python-osc lays it out, with datagram-size control.

Wire layout (OSC 1.0, as python-osc writes it): a message is its address and its type-tag string
(',' + one letter per argument), each NUL-terminated and padded to a multiple of 4 bytes
(`pythonosc.parsing.osc_types.write_string`), then the arguments: int32 'i' and float32 'f'
big-endian, strings 's' padded like the address. A bundle is b"#bundle\0", the 8-byte time tag
("immediately" = 0…01) and, per element, its int32 size then its bytes (`OscBundleBuilder`).

What keeps it cheap on the sender thread:
- address + type-tag prefixes are written once by python-osc's `write_string` and cached;
- the arguments of a small message are packed by one `struct` call (the '>i' / '>f' packing of
  python-osc's `write_int` / `write_float`);
- float arrays (mesh chunks, the 52 weights, families of one-value messages) are converted in one
  numpy step to big-endian float32 (`astype('>f4')`); equal mesh chunks are the rows of one
  big-endian int32 block (prefix words, 5 header ints, payload), sliced into datagrams;
- bundles are framed directly, not through `OscBundleBuilder`, which parses every message and the
  finished bundle back.
Per-frame formats go one step further with `realtime.osc.template` (a frame's datagrams built once
by these functions, then only their numbers rewritten). `tests/test_osc.py` compares all of it with
python-osc's `OscMessageBuilder` / `OscBundleBuilder` on real frames. Only int32 ('i'), float32
('f') and string ('s') arguments are used.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY
from pythonosc.parsing import osc_types

_WRITERS = {"i": osc_types.write_int, "f": osc_types.write_float, "s": osc_types.write_string}
_INT32 = struct.Struct(">i")

CHUNK_HEADER = "iiiii"
"""Int32 arguments leading every chunk message: id, chunk index, chunk count, first item, item total."""

BUNDLE_OVERHEAD = 16  # "#bundle\0" + 8-byte time tag
BUNDLE_ELEMENT_OVERHEAD = 4  # int32 size before each element
BUNDLE_HEAD = b"#bundle\x00" + osc_types.write_date(IMMEDIATELY)
"""The first 16 bytes of every bundle we send: the bundle tag and the time tag 'immediately'."""


@lru_cache(maxsize=1024)
def message_prefix(address: str, types: str) -> bytes:
    """The address and the type-tag string (',' + types) of a message, each OSC-padded (python-osc)."""
    return osc_types.write_string(address) + osc_types.write_string("," + types)


@lru_cache(maxsize=256)
def _argument_packer(types: str) -> Callable[..., bytes]:
    """A function packing one value per type letter: one `struct` call for 'i'/'f'-only types,
    python-osc's writers one by one when strings are involved. Unknown letters: KeyError."""
    if set(types) <= {"i", "f"}:
        return struct.Struct(">" + types).pack
    writers = [_WRITERS[t] for t in types]
    return lambda *values: b"".join(w(v) for w, v in zip(writers, values))


def message(address: str, types: str = "", values: Sequence = ()) -> bytes:
    """One OSC message datagram. types: one of 'i', 'f', 's' per value (int32, float32, string)."""
    if len(types) != len(values):
        raise ValueError(f"{address}: {len(types)} type tags for {len(values)} values")
    return message_prefix(address, types) + _argument_packer(types)(*values)


def floats(values: Iterable | np.ndarray) -> list[float]:
    """Values as Python floats already rounded to float32 (what the wire carries)."""
    return np.asarray(values, dtype=np.float32).reshape(-1).tolist()


def float32_be(values: Iterable | np.ndarray) -> bytes:
    """Values rounded to float32, as big-endian bytes (4 per value): the wire form of 'f' arguments."""
    return np.asarray(values, dtype=np.float32).reshape(-1).astype(">f4").tobytes()


def float_array_message(address: str, values: Iterable | np.ndarray) -> bytes:
    """One message with every value as a float32 argument ('f' × n), e.g. `/face/blend` [52]."""
    data = float32_be(values)
    return message_prefix(address, "f" * (len(data) // 4)) + data


def one_float_messages(prefixes: Sequence[bytes], values: Iterable | np.ndarray) -> list[bytes]:
    """A family of one-float messages: message k is `prefixes[k]` (from `message_prefix(addr, 'f')`
    or with leading arguments already written, e.g. VMC's name) followed by values[k] as float32."""
    data = float32_be(values)
    if len(data) != 4 * len(prefixes):
        raise ValueError(f"{len(data) // 4} values for {len(prefixes)} messages")
    return [p + data[4 * k:4 * k + 4] for k, p in enumerate(prefixes)]


def bundle(messages: Sequence[bytes]) -> bytes:
    """A bundle (time tag 'immediately') of ready-built message datagrams."""
    return BUNDLE_HEAD + b"".join([_INT32.pack(len(m)) + m for m in messages])


def bundle_size(message_sizes: Iterable[int]) -> int:
    """Bytes of a bundle holding messages of these sizes."""
    return BUNDLE_OVERHEAD + sum(BUNDLE_ELEMENT_OVERHEAD + s for s in message_sizes)


def bundle_groups(message_sizes: Sequence[int], mtu: int) -> list[range]:
    """Which messages go in which bundle: in order, each bundle filled while it stays ≤ `mtu` bytes.

    message_sizes: bytes of each message. Returns one range of message indices per bundle. Raises
    ValueError for a message that fits no bundle of `mtu` bytes."""
    groups: list[range] = []
    start, size = 0, BUNDLE_OVERHEAD
    for i, n in enumerate(message_sizes):
        need = BUNDLE_ELEMENT_OVERHEAD + n
        if BUNDLE_OVERHEAD + need > mtu:
            raise ValueError(f"an OSC message of {n} B does not fit a {mtu} B datagram")
        if i > start and size + need > mtu:
            groups.append(range(start, i))
            start, size = i, BUNDLE_OVERHEAD
        size += need
    if len(message_sizes) > start:
        groups.append(range(start, len(message_sizes)))
    return groups


def pack_bundles(messages: Sequence[bytes], mtu: int) -> list[bytes]:
    """Group messages, in order, into as few bundles of at most `mtu` bytes as possible."""
    return [bundle([messages[i] for i in group]) for group in bundle_groups([len(m) for m in messages], mtu)]


def chunk_message_size(address: str, n_values: int) -> int:
    """Bytes of a chunk message carrying `n_values` 4-byte values after the chunk header."""
    return (len(osc_types.write_string(address)) + len(osc_types.write_string("," + CHUNK_HEADER + "f" * n_values))
            + 4 * len(CHUNK_HEADER) + 4 * n_values)


@lru_cache(maxsize=256)
def items_per_chunk(address: str, width: int, mtu: int) -> int:
    """Largest number of `width`-value items whose chunk message fits in `mtu` bytes."""
    n = max(1, (mtu - len(address) - 4 * len(CHUNK_HEADER)) // (5 * width) + 1)
    while n > 0 and chunk_message_size(address, n * width) > mtu:
        n -= 1
    if n == 0:
        raise ValueError(f"{mtu} B is too small for one {width}-value item of {address}")
    return n


def chunked(address: str, ident: int, values: np.ndarray, kind: str, mtu: int) -> list[bytes]:
    """Split an [N, k] array into messages of at most `mtu` bytes.

    Each message: `address` with int32 (ident, chunk index, chunk count, first item, N), then the
    flattened items of that chunk as 'f' (float32) or 'i' (int32). Returns [] when N is 0.
    """
    if kind not in ("f", "i"):
        raise KeyError(kind)
    arr = np.asarray(values)
    n_items, width = arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)) if arr.ndim > 1 else 1
    if n_items == 0:
        return []
    per = items_per_chunk(address, width, mtu)
    count = -(-n_items // per)
    flat = arr.astype(np.float32 if kind == "f" else np.int32, copy=False).reshape(n_items, width)
    n_full = n_items // per
    out = _equal_chunks(address, (ident, 0, count, 0, n_items), flat[:n_full * per], per, kind) if n_full else []
    if n_full < count:
        out += _equal_chunks(address, (ident, n_full, count, n_full * per, n_items), flat[n_full * per:],
                             n_items - n_full * per, kind)
    return out


def _equal_chunks(address: str, header: tuple[int, int, int, int, int], rows: np.ndarray, per: int,
                  kind: str) -> list[bytes]:
    """Chunk messages of exactly `per` rows each, laid out as the rows of one big-endian int32 block.

    header: (ident, index of the first chunk here, chunk count, first item of the first chunk here,
    item total); rows: [n·per, width] float32 ('f') or int32 ('i'). Chunk c of this call gets index
    header[1] + c and first item header[3] + c·per.
    """
    n_chunks = len(rows) // per
    template = _chunk_template(address, kind, per * rows.shape[1], n_chunks, per, header[1:])
    block = template.copy()
    p = block.shape[1] - len(CHUNK_HEADER) - per * rows.shape[1]  # words of address + type tags
    block[:, p] = header[0]
    payload = block[:, p + len(CHUNK_HEADER):]
    if kind == "f":
        payload = payload.view(">f4")
    payload[...] = rows.reshape(n_chunks, -1)  # native → big-endian: a byte swap, no rounding
    data = block.tobytes()
    step = 4 * block.shape[1]
    return [data[k * step:(k + 1) * step] for k in range(n_chunks)]


@lru_cache(maxsize=64)
def _chunk_template(address: str, kind: str, n_values: int, n_chunks: int, per: int,
                    header: tuple[int, int, int, int]) -> np.ndarray:
    """[n_chunks, words] big-endian int32 rows of chunk messages with everything but the ident and
    the payload filled in: address + type tags, chunk index, chunk count, first item, item total.

    header: (index of the first chunk, chunk count, first item of the first chunk, item total).
    These depend only on the array's size and the MTU, so each frame reuses the same template.
    """
    first_chunk, count, first_item, total = header
    prefix = np.frombuffer(message_prefix(address, CHUNK_HEADER + kind * n_values), dtype=">i4")
    p = len(prefix)
    block = np.zeros((n_chunks, p + len(CHUNK_HEADER) + n_values), dtype=">i4")
    block[:, :p] = prefix
    block[:, p + 1] = np.arange(first_chunk, first_chunk + n_chunks)
    block[:, p + 2] = count
    block[:, p + 3] = np.arange(first_item, first_item + n_chunks * per, per)
    block[:, p + 4] = total
    block.flags.writeable = False
    return block
