"""CURVE: a broker started with keys admits listed publishers and subscribers and no one else.

Real sockets on 127.0.0.1, real key files made by ``mnist-live keys init``, the broker's real
ZAP authenticator. A refused peer's messages never reach the broker; its handshake is counted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth

from broker.clients.clone import CloneClient
from broker.clients.publisher import Publisher
from broker.clients.request import ask
from broker.curve import keys
from broker.curve.gate import RELOAD_SECONDS
from broker.curve.keys import ClientKeys
from broker.forwarder import Forwarder
from protocol import tokens
from protocol.errors import CommandError
from protocol.snapshot import ControlRequest, StatsRequest
from tests.conftest import assert_one_line_error, collect, run_cli, wait_until
from tests.wire import metrics

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    made = tmp_path_factory.mktemp("keys") / "talk"
    done = run_cli("keys", "init", str(made))
    assert done.returncode == 0, done.stderr
    return made


@pytest.fixture
def secured(make_broker, folder: Path) -> Iterator[Forwarder]:
    context = zmq.Context()  # its own ZAP handler: one per context
    broker = make_broker(curve=keys.server_keys(folder), context=context)
    yield broker


def stranger(tmp_path: Path, server: bytes) -> ClientKeys:
    """A key pair nobody listed, that knows the broker's public key."""
    public, secret = zmq.auth.load_certificate(zmq.auth.create_certificates(tmp_path, "x")[1])
    assert secret is not None
    return ClientKeys(public, secret, server)


def publish(broker: Forwarder, curve: ClientKeys | None, steps: int = 5) -> Publisher:
    publisher = Publisher(broker.endpoints[0], curve=curve, linger_ms=0)
    publisher.wait_for_subscriber(2.0)
    for step in range(steps):
        metrics(publisher, step)
    return publisher


def refused_at(broker: Forwarder, name: str) -> int:
    assert broker.gate is not None
    return broker.gate.refused[name]


def test_a_listed_publisher_reaches_a_listed_subscriber(secured, folder: Path) -> None:
    publisher = publish(secured, keys.client_keys(folder, "publisher"))
    try:
        wait_until(lambda: secured.stats.accepted["metrics"] == 5, 5, message="accepted")
        client = CloneClient(
            secured.endpoints[1], secured.snapshot_endpoint,
            curve=keys.client_keys(folder, "subscriber"),
        )  # fmt: skip
        client.start()
        try:
            got = collect(client, 5, timeout=5)
            assert [m.step for m in got] == list(range(5))
        finally:
            client.close()
        stats = ask(secured.snapshot_endpoint, StatsRequest(type="stats"), 5,
                    keys.client_keys(folder, "subscriber"))  # fmt: skip
        assert stats["curve"] == {"refused": {}, "total_refused": 0}
    finally:
        publisher.close(0)


@pytest.mark.parametrize("who", ["unknown key", "no key", "wrong server key", "subscriber key"])
def test_a_publisher_without_a_listed_key_gets_nothing_through(
    secured, folder: Path, tmp_path: Path, who: str
) -> None:
    mine = keys.client_keys(folder, "publisher")
    other_broker = zmq.auth.load_certificate(zmq.auth.create_certificates(tmp_path, "b")[0])[0]
    curve = {
        "unknown key": stranger(tmp_path, mine.server),
        "no key": None,  # the NULL mechanism
        "wrong server key": ClientKeys(mine.public, mine.secret, other_broker),
        "subscriber key": keys.client_keys(folder, "subscriber"),  # listed, but not for --in
    }[who]
    publisher = publish(secured, curve)
    try:
        assert not publisher.subscribed
        wait_until(lambda: refused_at(secured, "in") >= 1, 5, message="a refused handshake")
        time.sleep(0.3)
        assert secured.stats.received == 0
    finally:
        publisher.close(0)


def test_an_unlisted_subscriber_reads_nothing_and_commands_nothing(
    secured, folder: Path, tmp_path: Path
) -> None:
    """An anonymous (or unlisted) control request is not even heard, token or not."""
    listed = publish(secured, keys.client_keys(folder, "publisher"))
    try:
        wait_until(lambda: secured.stats.accepted["metrics"] == 5, 5, message="accepted")
        token = tokens.presenter_token()[0]
        pause = ControlRequest(type="control", command={"command": "pause"}, token=token)
        for curve in (None, stranger(tmp_path, keys.client_keys(folder, "subscriber").server)):
            with pytest.raises(CommandError, match="no answer"):
                ask(secured.snapshot_endpoint, pause, 0.5, curve)
            client = CloneClient(secured.endpoints[1], secured.snapshot_endpoint, curve=curve)
            client.start()
            try:
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    assert client.poll(0.05) == []
            finally:
                client.close()
        assert listed.poll_commands() == []
        assert secured.service.counts["control"] == 0
        wait_until(
            lambda: refused_at(secured, "snapshot") >= 2 and refused_at(secured, "out") >= 2,
            5,
            message="both refusals counted",
        )
        # the listed subscriber's command, with the token, is relayed
        ask(secured.snapshot_endpoint, pause, 5, keys.client_keys(folder, "subscriber"))
        commands = wait_until(listed.poll_commands, 5, message="the relayed pause")
        assert [c.command for c in commands] == ["pause"]
    finally:
        listed.close(0)


def test_a_key_listed_while_the_broker_runs_is_admitted(
    secured, folder: Path, tmp_path: Path
) -> None:
    """No broker restart: the lists are reread. The refused peer itself must start again
    (libzmq does not retry a connection that failed its handshake)."""
    newcomer = stranger(tmp_path, keys.client_keys(folder, "publisher").server)
    listed = folder / "publishers" / "newcomer.key"
    publisher = publish(secured, newcomer)
    try:
        wait_until(lambda: refused_at(secured, "in") >= 1, 5, message="the first refusal")
        publisher.close(0)
        shutil.copy(tmp_path / "x.key", listed)
        time.sleep(RELOAD_SECONDS)
        publisher = publish(secured, newcomer, steps=3)
        assert publisher.subscribed
        wait_until(lambda: secured.stats.accepted["metrics"] == 3, 5, message="accepted")
    finally:
        listed.unlink(missing_ok=True)
        publisher.close(0)


def test_keys_init_makes_private_files_and_refuses_to_overwrite(folder: Path) -> None:
    for secret in folder.glob("*.key_secret"):
        assert secret.stat().st_mode & 0o077 == 0, secret
    assert {p.name for p in (folder / "publishers").iterdir()} == {"publisher.key"}
    assert {p.name for p in (folder / "subscribers").iterdir()} == {"subscriber.key"}
    assert_one_line_error(run_cli("keys", "init", str(folder)), "already holds keys")


def test_missing_or_exposed_keys_are_one_line_errors(folder: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "none")
    any_port = "tcp://127.0.0.1:*"
    done = run_cli("broker", "--curve", missing, "--in", any_port, "--out", any_port)
    assert_one_line_error(done, "keys init")
    exposed = tmp_path / "exposed"
    shutil.copytree(folder, exposed)
    os.chmod(exposed / "publisher.key_secret", 0o644)
    assert_one_line_error(
        run_cli("train", "--curve", str(exposed), "--dataset", "synthetic"), "chmod 600"
    )
    (exposed / "subscriber.key_secret").unlink()
    assert_one_line_error(
        run_cli("status", "--curve", str(exposed), "--timeout", "0.1"), "is missing"
    )


@pytest.mark.slow
def test_every_program_works_through_a_curve_broker(programs, folder: Path, tmp_path) -> None:
    """broker, train, view, record, status and control, each with ``--curve``: the page fills,
    the recording holds the run, and a plain client is refused."""
    from protocol.endpoints import free_tcp_port, free_tcp_port_pair
    from tests.test_system import source_length

    curve = ["--curve", str(folder)]
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    snapshot = f"tcp://127.0.0.1:{int(broker_out.rsplit(':', 1)[1]) + 1}"
    port = free_tcp_port()
    broker = programs.start("broker", "--in", broker_in, "--out", broker_out, *curve)
    wait_until(lambda: "CURVE on" in programs.output(broker), 20, message="broker up")
    viewer = programs.start("view", "--connect", broker_out, "--port", str(port), *curve)
    recording = tmp_path / "run.mcap"
    recorder = programs.start("record", "--connect", broker_out, "--out", str(recording),
                              "--until-finished", *curve)  # fmt: skip
    trainer = programs.start("train", "--connect", broker_in, "--dataset", "synthetic",
                             "--epochs", "1", "--steps-per-second", "50", "--quiet",
                             "--wait-for-start", *curve)  # fmt: skip
    wait_until(lambda: "publishing to" in programs.output(trainer), 30, message="trainer up")
    assert run_cli("control", "start", "--broker", snapshot, *curve).returncode == 0
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="viewer up")
    wait_until(lambda: source_length(url, "loss") > 3, 30, interval=0.5, message="loss points")
    assert run_cli("control", "stop", "--broker", snapshot, *curve).returncode == 0
    assert trainer.wait(20) == 0, programs.output(trainer)
    assert recorder.wait(20) == 0
    plain = run_cli("status", "--broker", snapshot, "--timeout", "0.5")
    assert plain.returncode == 2 and "no answer" in plain.stderr
    done = run_cli("status", "--broker", snapshot, *curve)
    figures = json.loads(done.stdout)
    assert figures["dropped"] == {} and figures["curve"]["refused"]["snapshot"] >= 1
    inspected = run_cli("inspect", str(recording))
    assert inspected.returncode == 0 and "run_finished" in inspected.stdout
    for program in (viewer, broker):
        assert programs.stop(program, signal.SIGINT) == 0
    assert "Traceback" not in "".join(programs.output(p) for p in (trainer, broker, viewer))
