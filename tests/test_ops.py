"""/healthz and /metrics on the viewer's HTTP port, read over real HTTP."""

from __future__ import annotations

import json
import re
import urllib.request

from bokeh.client import pull_session

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import wait_until

SAMPLE = re.compile(
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\})?"
    r" (NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$"
)


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.headers["Content-Type"], reply.read().decode()


def parse_metrics(text: str) -> dict[str, float]:
    """Check the exposition format line by line; return sample name -> value."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name not in typed, f"second TYPE for {name}"
            typed.add(name)
        else:
            assert SAMPLE.match(line), f"not a sample line: {line!r}"
            name, value = line.rsplit(" ", 1)
            base = re.sub(r"(_sum|_count)$", "", name.split("{")[0])
            assert base in typed, f"{name} has no TYPE before it"
            assert re.search(r'[{,]process="\d+"[,}]', name), f"{name} names no process"
            name = re.sub(r'process="\d+",?', "", name).replace("{}", "")
            samples[name] = float(value)
    return samples


def test_healthz_and_metrics(programs) -> None:
    port = free_tcp_port()
    out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    viewer = programs.start("view", "--connect", out, "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 20, message="viewer up")
    base = f"http://127.0.0.1:{port}"

    status, kind, body = get(base + "/healthz")
    health = json.loads(body)
    assert status == 200 and kind.startswith("application/json")
    assert health["ok"] is True and health["sessions"] == 0
    assert health["hub"]["connected"] is True and health["hub"]["receiving"] is False
    assert health["hub"]["last_message_age_seconds"] is None

    status, kind, body = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    before = parse_metrics(body)
    for name in (
        "mnist_live_viewer_sessions_open",
        "mnist_live_viewer_sessions_total",
        "mnist_live_viewer_messages_received_total",
        "mnist_live_viewer_messages_rejected_total",
        "mnist_live_viewer_updates_sent_total",
        'mnist_live_viewer_lag_seconds{quantile="0.99"}',
        "process_resident_memory_bytes",
    ):
        assert name in before, name
    assert before["process_resident_memory_bytes"] > 10_000_000

    session = pull_session(url=base + "/")
    try:
        after = parse_metrics(get(base + "/metrics")[2])
        assert (
            after["mnist_live_viewer_sessions_open"]
            >= before["mnist_live_viewer_sessions_open"] + 1
        )
        assert (
            after["mnist_live_viewer_sessions_total"]
            >= before["mnist_live_viewer_sessions_total"] + 1
        )
        assert json.loads(get(base + "/healthz")[2])["sessions"] >= 1
    finally:
        session.close()
    log = programs.output(viewer)
    assert "tornado.access" not in log and "GET /" not in log, "a page load writes no lines"


def test_access_lines_come_back_at_debug(programs) -> None:
    port = free_tcp_port()
    out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    viewer = programs.start("view", "--connect", out, "--port", str(port), "--log-level", "DEBUG")
    wait_until(lambda: "dashboard at" in programs.output(viewer), 20, message="viewer up")
    get(f"http://127.0.0.1:{port}/healthz")
    wait_until(lambda: "GET /healthz" in programs.output(viewer), 5, message="the access line")
