"""The real programs as separate processes, started in the awkward order users will use."""

from __future__ import annotations

import signal

import pytest
from bokeh.client import pull_session

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import assert_one_line_error, make_idx_dir, run_cli, wait_until


def source_length(url: str, name: str) -> int:
    """Open a fresh Bokeh session, read one named source's length, close the session."""
    session = pull_session(url=url)
    try:
        source = session.document.get_model_by_name(name)
        assert source is not None, f"no ColumnDataSource named {name!r}"
        return len(next(iter(source.data.values()), []))
    finally:
        session.close()


def test_viewer_then_broker_then_trainer(programs, endpoint, tmp_path) -> None:
    broker_in, port = endpoint(), free_tcp_port()
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"  # the snapshot service: port + 1
    url = f"http://127.0.0.1:{port}/"
    data = make_idx_dir(tmp_path / "digits", n_train=2000, n_test=200)
    viewer = programs.start("view", "--connect", broker_out, "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 20, message="viewer up")
    broker = programs.start("broker", "--in", broker_in, "--out", broker_out)
    trainer = programs.start(
        "train",
        "--connect",
        broker_in,
        "--dataset",
        str(data),
        "--hidden",
        "64",
        "--epochs",
        "50",
        "--steps-per-second",
        "100",
        "--quiet",
    )

    first = wait_until(
        lambda: source_length(url, "loss"), 20, interval=0.5, message="loss points in a new session"
    )
    wait_until(
        lambda: source_length(url, "loss") > first + 5,
        10,
        interval=0.5,
        message="the loss source to grow",
    )
    assert source_length(url, "sample") == 1
    assert source_length(url, "probabilities") == 10

    assert programs.stop(trainer, signal.SIGINT) == 0
    assert "run stopped" in programs.output(trainer)
    assert programs.stop(broker, signal.SIGINT) == 0
    assert programs.stop(viewer, signal.SIGTERM) == 0
    assert "Traceback" not in "".join(programs.output(p) for p in (trainer, broker, viewer))


@pytest.mark.parametrize(
    "command",
    [
        "",
        "demo",
        "train",
        "broker",
        "view",
        "status",
        "control",
        "protocol",
        "export",
        "replay",
        "record",
        "inspect",
    ],
)
def test_help_explains_every_option(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "usage: mnist-live" in out
    lines = out.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("--") or stripped.startswith("-h"):
            text = stripped.split("  ", 1)[1:] or [lines[i + 1].strip()]
            assert text[0], f"option without help: {stripped}"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["train", "--connect", "nowhere"], "is not a ZeroMQ endpoint"),
        (["train", "--dataset", "/no/such/dir"], "unknown dataset"),
        (["view", "--port", "70000"], "--port must be"),
        (["broker", "--in", "tcp://127.0.0.1:99999"], "is not a ZeroMQ endpoint"),
    ],
)
def test_bad_input_gets_one_line_not_a_traceback(args, complaint) -> None:
    assert_one_line_error(run_cli(*args), complaint)


def test_a_program_started_with_ctrl_c_ignored_still_stops_on_it(endpoint) -> None:
    """A shell starts a background job with SIGINT ignored; Python would keep it so."""
    import subprocess
    import sys

    args = ["broker", "--in", endpoint(), "--out", endpoint(), "--snapshot", endpoint()]
    process = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stderr is not None
        assert "broker up" in process.stderr.readline()  # past start-up: its handlers are set
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
