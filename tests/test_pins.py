"""Libraries whose internals we use are pinned to the minor version the tests run against.

``viewer/server/batching.py`` reaches into Bokeh's ``ServerSession`` and writes ready-made
frames to a Tornado websocket's stream, ``viewer/server/deflate.py`` turns Tornado's context
takeover off, and ``broker/recording/reader.py`` calls mcap's
``breakup_chunk``; test_batching, test_broadcast and test_recording exercise those uses
against what is installed, and this checks that what is installed is what pyproject.toml
pins, and that the pin admits one minor version only.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version

import pytest
from bokeh.server.session import ServerSession
from bokeh.server.views.ws import WSHandler
from bokeh.util import serialization
from mcap import stream_reader
from tornado.websocket import WebSocketProtocol13, _PerMessageDeflateCompressor

from tests.conftest import REPO

PINNED = ("bokeh", "mcap", "tornado")


def requirement(name: str) -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(rf"{name}\b", d)]
    return spec


@pytest.mark.parametrize("name", PINNED)
def test_the_pin_admits_one_minor_version_and_it_is_installed(name: str) -> None:
    spec = requirement(name)
    pin = re.fullmatch(rf"{name}>=(\d+)\.(\d+),<(\d+)\.(\d+)", spec)
    assert pin is not None, f"{spec!r} is not a pin to one minor version"
    major, minor, next_major, next_minor = map(int, pin.groups())
    assert (next_major, next_minor) == (major, minor + 1), spec
    installed = tuple(int(part) for part in version(name).split(".")[:2])
    assert installed == (major, minor), f"{name} {version(name)} installed, {spec}"


def test_the_internals_we_use_are_there() -> None:
    for name in ("_document_patched", "_pending_writes", "_subscribed_connections"):
        assert name in ServerSession.__init__.__code__.co_names or hasattr(ServerSession, name)
    assert callable(stream_reader.breakup_chunk)
    assert "_compressor" in WebSocketProtocol13.__init__.__code__.co_names
    # viewer/server/deflate.py: the server side's compressor is made here, from the answer
    parameters = list(inspect.signature(WebSocketProtocol13._create_compressors).parameters)
    assert parameters[:3] == ["self", "side", "agreed_parameters"], parameters
    assert "_compressor" in _PerMessageDeflateCompressor.__init__.__code__.co_names
    assert "self.stream = " in inspect.getsource(WebSocketProtocol13)
    assert "write_lock" in WSHandler.__init__.__code__.co_names
    assert isinstance(serialization._simple_id, int) and serialization._simple_id_lock
    # viewer/server/browser_changes.py: the handlers the protocol handler looks up when made
    from bokeh.server.protocol_handler import ProtocolHandler

    source = inspect.getsource(ProtocolHandler.__init__)
    assert "ServerSession.patch" in source and "ServerSession.push" in source
    assert isinstance(inspect.getattr_static(ServerSession, "patch"), classmethod)
