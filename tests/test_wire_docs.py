"""docs/protocol.md is enough to subscribe: its example program runs against the real thing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from broker.clients.publisher import Publisher
from protocol.endpoints import free_tcp_port
from protocol.tokens import presenter_token
from tests.conftest import REPO
from tests.wire import ask, dealer, progress


def example_subscriber() -> str:
    text = (REPO / "docs" / "protocol.md").read_text()
    match = re.search(r"<!-- example-subscriber -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/protocol.md lost its example subscriber"
    return match.group(1)


def test_the_documented_subscriber_decodes_a_snapshot_and_the_live_stream(
    programs, tmp_path
) -> None:
    code = example_subscriber()
    assert "import protocol" not in code and "from protocol" not in code
    assert "broker" not in re.findall(r"^(?:from|import) (\w+)", code, re.M)
    script = tmp_path / "subscriber.py"
    script.write_text(code)

    in_, out, snap = (f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(3))
    programs.start("broker", "--in", in_, "--out", out, "--snapshot", snap)
    publisher = Publisher(in_)
    assert publisher.wait_for_subscriber(20)
    progress(publisher, range(100))
    before = publisher.seq

    subscriber = subprocess.Popen(
        [sys.executable, str(script), out, snap, "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # no project package importable from here
    )
    try:
        step = 100
        while subscriber.poll() is None and step < 2000:
            progress(publisher, range(step, step + 1))
            step += 1
            time.sleep(0.01)
        stdout, stderr = subscriber.communicate(timeout=20)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
        publisher.close()
    assert subscriber.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["run"] == publisher.run_id
    assert result["first_kind"] == "metrics"  # seq 0
    assert result["snapshot"] >= 100 and result["snapshot"] + result["gone"] >= before
    assert result["live"] > 10 and set(result["live_kinds"]) == {"metrics", "sample"}
    assert result["last_seq"] > before


def test_every_reply_the_broker_sends_validates_against_the_published_schema(broker) -> None:
    """A program in another language validates replies with ``protocol schema --part replies``."""
    import jsonschema

    done = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "protocol", "schema", "--part", "replies"],
        capture_output=True,
        text=True,
        check=True,
    )
    schema = json.loads(done.stdout)
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    progress(publisher, range(20))
    client = dealer(broker.snapshot_endpoint)
    requests = [
        {"type": "snapshot", "run": "latest", "id": 1},
        {"type": "runs", "id": 2},
        {"type": "stats"},
        {"type": "control", "command": {"command": "pause"}, "token": presenter_token()[0]},
        {"type": "control", "command": {"command": "pause"}},  # anonymous: refused
        {"type": "no such request"},
    ]
    kinds = []
    for request in requests:
        _, reply = ask(client, request)
        jsonschema.validate(reply, schema)
        kinds.append(reply["type"])
    assert kinds == ["end", "runs", "stats", "ok", "error", "error"]
    with_an_extra = {"type": "ok", "ok": True, "id": None, "surprise": 1}
    try:
        jsonschema.validate(with_an_extra, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema lets an unknown field through")
    client.close()
    publisher.close()


def test_a_reply_that_is_not_one_is_a_one_line_error_not_a_silence(endpoint) -> None:
    """A client meets a broker of another version: it says so at once, it does not wait."""
    import threading

    import zmq

    from broker.clients.request import ask
    from protocol.errors import CommandError
    from protocol.snapshot import REPLY, RunsRequest, parse_reply

    address = endpoint()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    answer = [REPLY, b'{"type": "runs", "id": 1, "runs": [{"run_id": ""}]}']

    def serve() -> None:
        if router.poll(5000):
            who, _ = router.recv_multipart()
            router.send_multipart([who, *answer])

    thread = threading.Thread(target=serve)
    thread.start()
    began = time.monotonic()
    try:
        ask(address, RunsRequest(type="runs"), timeout=5)
    except CommandError as exc:
        assert "cannot read" in str(exc) and "same version" in str(exc)
    else:
        raise AssertionError("a malformed reply was taken")
    finally:
        thread.join(5)
        router.close()
    assert time.monotonic() - began < 4, "it said so at once"
    try:
        parse_reply(answer)  # an empty run id would have broken the Clone client's next request
    except ValueError as exc:
        assert "run_id" in str(exc)
    else:
        raise AssertionError("an empty run id passed")
