"""``mnist-live view``: help, one-line errors, and several server processes."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from protocol.cli import main
from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import run_cli, wait_until
from viewer.server.settings import ViewerSettings, app_argv, parse_app_args


def view(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("view", *args)


def test_help_explains_every_option() -> None:
    text = view("--help").stdout
    for option in (
        "--connect", "--snapshot", "--port", "--address", "--allow-origin",
        "--presenter-token", "--theme", "--large", "--frame-rate", "--num-procs", "--prebuild",
    ):  # fmt: skip
        assert option in text, option


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "70000"], "--port must be 1..65535"),
        (["--frame-rate", "0"], "--frame-rate must be above 0"),
        (["--num-procs", "0"], "--num-procs must be 1.."),
        (["--prebuild", "-1"], "--prebuild must be 0.."),
        (["--presenter-token", "short"], "--presenter-token must be 8-128"),
        (["--connect", "localhost:5556"], "--connect"),
        (["--snapshot", "nope"], "--snapshot"),
    ],
)
def test_bad_values_are_one_line_errors(args: list[str], words: str, capsys) -> None:
    assert main(["view", *args]) == 2  # checked before anything is bound or forked
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines


def test_a_drawings_folder_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["view", "--keep-drawings", str(blocker / "drawings")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--keep-drawings" in lines[0] and "cannot make" in lines[0], lines


def test_a_taken_port_is_a_one_line_error(programs) -> None:
    port = free_tcp_port()
    out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    first = programs.start("view", "--connect", out, "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(first), 20, message="first viewer")
    result = view("--connect", out, "--port", str(port))
    assert result.returncode == 2 and "pick another --port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_processes_serve_and_both_subscribe(programs) -> None:
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    out_port = free_tcp_port_pair()
    port = free_tcp_port()
    programs.start("broker", "--in", broker_in, "--out", f"tcp://127.0.0.1:{out_port}")
    viewer = programs.start(
        "view", "--connect", f"tcp://127.0.0.1:{out_port}", "--port", str(port),
        "--num-procs", "2", "--presenter-token", "two-procs-token",
    )  # fmt: skip

    def subscribers() -> int:
        result = run_cli("status", "--broker", f"tcp://127.0.0.1:{out_port + 1}", timeout=30)
        return json.loads(result.stdout)["subscribers"] if result.returncode == 0 else 0

    wait_until(lambda: subscribers() >= 2, 30, interval=0.5, message="two subscriptions")
    pids = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:  # connections land on either process
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            health = json.loads(reply.read())  # (one still loading its app accepts none)
        assert health["ok"] and health["hub"]["connected"]
        pids.add(health["pid"])
        time.sleep(0.05)
    assert len(pids) == 2, pids
    output = programs.output(viewer)
    assert output.count("presenter view at") == 1  # printed once, not per process
    assert programs.stop(viewer) == 0


def test_settings_reach_the_app_whatever_the_token_starts_with() -> None:
    for token in ("-starts-with-a-dash", "--two", "plain_token"):
        sent = ViewerSettings(
            connect="tcp://127.0.0.1:1", presenter_token=token, snapshot="tcp://127.0.0.1:2"
        )
        assert parse_app_args(app_argv(sent)) == sent
