"""`--osc [FORMAT@]HOST:PORT` → `OscTarget` (pure parsing; name resolution happens in the sender)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import UserError
from realtime.osc.formats import DEFAULT_FORMAT, EXAMPLE_FORMAT, FORMATS, format_names

DEFAULT_PORTS: dict[str, int] = {name: f.default_port for name, f in FORMATS.items()}
"""Each format's conventional port (from `FORMATS`): ours, FaceOSC's, the VMC protocol's Marionette port."""

ACCEPTED_FORM = (f"[FORMAT@]HOST:PORT, FORMAT@HOST or FORMAT alone (FORMAT one of {format_names()}; "
                 f"e.g. {EXAMPLE_FORMAT}@127.0.0.1:{FORMATS[EXAMPLE_FORMAT].default_port})")

# FORMAT@ (optional), then a bracketed IPv6 address or a host without ':' / '@' / spaces, then :PORT.
_PATTERN = re.compile(r"^(?:(?P<fmt>[A-Za-z]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:@\[\]]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class OscTarget:
    """One OSC destination. format: a name in `FORMATS` ('native' | 'faceosc' | 'vmc'); host: name or
    address (no brackets); port: UDP port 1..65535."""

    format: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.format}@{host}:{self.port}"


def parse_target(text: str) -> OscTarget:
    """Parse one `--osc` value. Raises `UserError` (one line, with the accepted form) when it is not
    `[FORMAT@]HOST:PORT`, `FORMAT@HOST` (the format's default port) or a bare `FORMAT`
    (127.0.0.1 and the default port)."""
    value = text.strip()
    if value.lower() in FORMATS:
        fmt = value.lower()
        return OscTarget(fmt, "127.0.0.1", FORMATS[fmt].default_port)
    m = _PATTERN.match(value)
    if m is None:
        raise UserError(f"cannot parse --osc {text!r}: expected {ACCEPTED_FORM}")
    fmt = (m.group("fmt") or DEFAULT_FORMAT).lower()
    if fmt not in FORMATS:
        raise UserError(f"unknown OSC format {m.group('fmt')!r} in --osc {text!r}: expected {ACCEPTED_FORM}")
    if m.group("port") is None and m.group("fmt") is None:
        raise UserError(f"--osc {text!r} has no port: expected {ACCEPTED_FORM}")
    port = int(m.group("port")) if m.group("port") is not None else FORMATS[fmt].default_port
    if not 1 <= port <= 65535:
        raise UserError(f"port {port} in --osc {text!r} is out of range 1..65535: expected {ACCEPTED_FORM}")
    return OscTarget(fmt, m.group("host").strip("[]"), port)
