"""The published JSON Schemas are strict 2020-12, and they agree with the broker's verdicts.

A client in another language validates with them (Ajv in Node.js, jsonschema in Python), so a
message the schema accepts must be one the broker forwards, and one the broker drops must fail
the schema; where JSON Schema cannot say a rule (a label within its sample's classes), that
case is left to docs/protocol.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from protocol import MESSAGE_TYPES, ProtocolError, decode, encode
from protocol.cli.schema import PARTS, schema
from tests.recordings import Feed

ENVELOPE = {"kind", "protocol", "run_id", "seq", "sent_at"}


@pytest.mark.parametrize("part", PARTS)
def test_each_schema_is_declared_2020_12_and_valid_there(part: str) -> None:
    document = schema(part)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    assert "discriminator" not in json.dumps(document), "not a JSON Schema keyword"


def test_every_message_requires_its_envelope() -> None:
    document = schema("messages")
    branches = [document["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in document["oneOf"]]
    assert len(branches) == len(MESSAGE_TYPES)
    for branch in branches:
        assert set(branch["required"]) >= ENVELOPE, branch["title"]
        assert "const" in branch["properties"]["kind"]


def ajv_dir() -> Path:
    node = shutil.which("node")
    where = os.environ.get("MNIST_LIVE_AJV_DIR")
    if node is None:
        pytest.skip("Node.js is not installed (.ci/run installs it with apt-get)")
    if not where or not (Path(where) / "node_modules" / "ajv").is_dir():
        pytest.skip("Ajv not found: set MNIST_LIVE_AJV_DIR to a folder with node_modules/ajv")
    return Path(where)


def test_ajv_in_strict_mode_compiles_every_schema(tmp_path: Path) -> None:
    modules = ajv_dir() / "node_modules"
    files = []
    for part in PARTS:
        path = tmp_path / f"{part}.json"
        path.write_text(json.dumps(schema(part)))
        files.append(str(path))
    script = Path(__file__).parent / "js" / "ajv_strict.js"
    done = subprocess.run(
        ["node", str(script), *files],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": compiles") == len(PARTS)


def frames_for(payload: dict, shapes: dict[str, list[int]]) -> list[bytes]:
    """A message's frames: its JSON, and a binary frame for each array reference in it."""
    frames = [str(payload.get("kind", "metrics")).encode(), json.dumps(payload).encode()]
    for name, shape in shapes.items():
        payload[name] = {"frame": len(frames), "dtype": "uint8", "shape": shape}
        frames.append(bytes(int(np.prod(shape))))
    frames[1] = json.dumps(payload).encode()
    return frames


def metrics() -> dict:
    return json.loads(encode(Feed("r").metrics(3))[1])


def weights() -> dict:
    return json.loads(encode(Feed("r").weights(3, tiles=2))[1])


def without(payload: dict, name: str) -> dict:
    return {k: v for k, v in payload.items() if k != name}


CASES: list[tuple[str, dict, dict[str, list[int]], bool]] = [
    ("a whole metrics message", metrics(), {}, True),
    ("weights with two tiles", weights(), {"tiles": [2, 28, 28]}, True),
    ("no kind", without(metrics(), "kind"), {}, False),
    ("no protocol", without(metrics(), "protocol"), {}, False),
    ("no sent_at", without(metrics(), "sent_at"), {}, False),
    ("no seq", without(metrics(), "seq"), {}, False),
    ("protocol 1 (still read)", {**metrics(), "protocol": 1}, {}, True),
    ("protocol 3", {**metrics(), "protocol": 3}, {}, False),
    ("a field too many", {**metrics(), "surprise": 1}, {}, False),
    ("seq -1", {**metrics(), "seq": -1}, {}, False),
    ("sent_at -1", {**metrics(), "sent_at": -1}, {}, False),
    ("sent_at in 2200", {**metrics(), "sent_at": 7.3e9}, {}, False),
    ("accuracy 1.5", {**metrics(), "batch_accuracy": 1.5}, {}, False),
    ("tiles of shape [5]", weights(), {"tiles": [5]}, False),
    ("300 tiles", {**weights(), "units": list(range(300))}, {"tiles": [300, 28, 28]}, False),
    ("tiles of 28x27", weights(), {"tiles": [2, 28, 27]}, False),
]


@pytest.mark.parametrize(
    ("payload", "shapes", "valid"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_broker_and_the_schema_agree(payload: dict, shapes: dict, valid: bool) -> None:
    frames = frames_for(dict(payload), shapes)
    document = json.loads(frames[1])
    schema_says = jsonschema.Draft202012Validator(schema("messages")).is_valid(document)
    try:
        decode(frames)
        broker_says = True
    except ProtocolError:
        broker_says = False
    assert (schema_says, broker_says) == (valid, valid)
