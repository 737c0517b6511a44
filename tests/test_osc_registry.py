"""The OSC format registry: one entry per format drives parsing, default ports, topology and help."""
from __future__ import annotations

import pytest

from realtime.osc import DEFAULT_PORTS, FORMATS, OscFormat, OscSender, OscTarget, parse_target
from realtime.osc.formats import DEFAULT_FORMAT, EncodeOptions, formats_help, get_format
from realtime.osc.targets import ACCEPTED_FORM
from tests.osc_support import face_record


def test_the_registry_holds_the_three_formats_and_their_ports():
    assert list(FORMATS) == ["native", "faceosc", "vmc"]
    assert DEFAULT_PORTS == {"native": 9000, "faceosc": 8338, "vmc": 39539}
    assert all(isinstance(f, OscFormat) and f.name == n and f.description for n, f in FORMATS.items())
    assert [n for n, f in FORMATS.items() if f.needs_topology] == ["native"]
    assert DEFAULT_FORMAT == "native" and get_format("VMC") is FORMATS["vmc"]


def test_help_and_error_texts_name_every_format():
    assert formats_help() == "FORMAT native (default), faceosc, vmc"
    assert ACCEPTED_FORM == ("[FORMAT@]HOST:PORT, FORMAT@HOST or FORMAT alone (FORMAT one of native, faceosc, vmc; "
                             "e.g. faceosc@127.0.0.1:8338)")


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_parses_and_encodes_within_the_mtu(name):
    assert parse_target(name) == OscTarget(name, "127.0.0.1", FORMATS[name].default_port)
    datagrams = FORMATS[name].encode(face_record(0), EncodeOptions(mtu=1400), 0.5)
    assert datagrams and all(len(d) <= 1400 for d in datagrams)


def test_the_sender_refuses_an_unregistered_format():
    with pytest.raises(ValueError, match="unknown OSC format"):
        OscSender([OscTarget("midi", "127.0.0.1", 9)])
