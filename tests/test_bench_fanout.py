"""The fan-out benchmark: its session client against a real Bokeh server, and a smoke run.

The client test streams far more updates than Bokeh 3's own ``bokeh.client`` survives (its
recursive receive loop stops near 320), so a client that recursed or dropped messages fails.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource

from tests.conftest import bokeh_app_server

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import nginx_front  # noqa: E402
from fanout_client import Session, open_sessions  # noqa: E402

UPDATES = 400
"""More than ``bokeh.client`` delivers before its recursion stops it."""


def streaming_app(doc: Document) -> None:
    """A source named ``loss`` gaining one row with a fresh ``sent_at`` every 5 ms."""
    source = ColumnDataSource({"step": [0], "sent_at": [time.time()]}, name="loss")
    doc.add_root(source)
    step = [0]

    def tick() -> None:
        step[0] += 1
        source.stream({"step": [step[0]], "sent_at": [time.time()]}, rollover=1_000_000)

    doc.add_periodic_callback(tick, 5)


@pytest.fixture
def bokeh_server() -> Iterator[int]:
    with bokeh_app_server(streaming_app) as port:
        yield port


def test_client_follows_hundreds_of_updates(bokeh_server: int) -> None:
    async def watch() -> tuple[list[Session], list[int]]:
        url = f"ws://127.0.0.1:{bokeh_server}/ws"
        sessions = await open_sessions(url, 2, parallel=2, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and min(len(s.frames) for s in sessions) < UPDATES:
            await asyncio.sleep(0.05)
        rows = [s.rows for s in sessions]
        late = (await open_sessions(url, 1, parallel=1, timeout=10))[0]
        for session in [*sessions, late]:
            session.close()
        return [*sessions, late], rows

    sessions, rows = asyncio.run(watch())
    *live, late = sessions
    for session, held in zip(live, rows, strict=True):
        assert session.error is None
        assert session.has_sent_at
        assert len(session.frames) >= UPDATES
        assert held >= UPDATES
        lags = [f.lag for f in session.frames]
        assert all(lag is not None and 0 <= lag < 5 for lag in lags)
    assert late.source_id is not None and late.rows >= 1


def run_bench(tmp_path: Path, script: str, *args: str) -> dict:
    """A benchmark run at a tiny size, to its end; its last line, the JSON summary."""
    command = [sys.executable, str(SCRIPTS / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bench_fanout_smoke(tmp_path: Path) -> None:
    summary = run_bench(
        tmp_path,
        "bench_fanout.py",
        "--sessions",
        "3",
        "--seconds",
        "4",
        "--warmup",
        "2",
        "--settle",
        "1",
        "--log-level",
        "WARNING",
    )
    for key in (
        "frames_expected",
        "frames_received_mean",
        "frame_fraction_min",
        "lag_p50_ms",
        "lag_p99_ms",
        "lag_first_third_p50_ms",
        "lag_last_third_p50_ms",
        "lag_grows",
        "server_cpu_percent",
        "memory_per_session_mb",
        "late_session_seconds",
        "target_lag_p99_ms",
        "pass",
    ):
        assert key in summary, key
    assert summary["sessions"] == 3
    assert summary["frames_received_mean"] > 0
    assert summary["sessions_failed"] == 0
    assert summary["compressed"] and summary["sessions_compressed"] == 3, "as browsers get it"
    assert math.isfinite(summary["lag_p50_ms"]) and math.isfinite(summary["lag_p99_ms"])
    assert 0 <= summary["lag_p50_ms"] <= summary["lag_p99_ms"]
    assert summary["server_cpu_percent"] > 0
    assert summary["late_session_seconds"] is not None
    assert summary["late_session_step"] >= summary["live_session_step"] > 0
    assert summary["late_session_rows"] > 0
    by_source = summary["kb_per_session_second_by_source"]
    assert by_source["loss"] > 0 and by_source["weights"] > 0, by_source
    assert sum(by_source.values()) == pytest.approx(summary["kb_per_session_second"], rel=0.05)


@pytest.mark.slow
def test_bench_drawing_smoke(tmp_path: Path) -> None:
    summary = run_bench(
        tmp_path,
        "bench_drawing.py",
        "--drawing", "2", "--watching", "3", "--seconds", "3", "--settle", "1",
        "--log-level", "WARNING",
    )  # fmt: skip
    assert summary["strokes"] >= 4 and summary["unanswered"] == 0, summary
    assert 0 < summary["stroke_to_bars_p50_ms"] <= summary["stroke_to_bars_p95_ms"]
    assert summary["watching_frame_fraction_quiet"] > 0.5, summary
    assert summary["watching_frame_fraction_drawing"] > 0.5, summary
    assert isinstance(summary["p95_met"], bool) and isinstance(summary["watching_unchanged"], bool)


@pytest.mark.slow
def test_bench_joining_smoke(tmp_path: Path) -> None:
    summary = run_bench(
        tmp_path,
        "bench_joining.py",
        "--minutes",
        "0.2",
        "--burst",
        "3",
        "--burst-rate",
        "5",
        "--settle",
        "1",
        "--log-level",
        "WARNING",
    )
    assert summary["history_rows"] == 240
    assert 0 < summary["late_first_page_kb"] < 1000
    assert summary["late_whole_seconds"] is not None and summary["late_whole_seconds"] > 0
    assert summary["burst_whole"] == 3
    assert 0 < summary["burst_whole_p50_seconds"] <= summary["burst_whole_max_seconds"]
    assert summary["burst_server_cpu_seconds_per_session"] > 0
    assert isinstance(summary["pass"], bool)


@pytest.mark.slow
@pytest.mark.skipif(
    nginx_front.NGINX is None, reason="needs Debian's nginx (apt-get install nginx)"
)
def test_bench_fanout_via_nginx_smoke(tmp_path: Path) -> None:
    summary = run_bench(
        tmp_path,
        "bench_fanout.py",
        "--sessions",
        "3",
        "--via-nginx",
        "--seconds",
        "3",
        "--warmup",
        "2",
        "--settle",
        "1",
        "--log-level",
        "WARNING",
    )
    assert summary["via_nginx"] is True and summary["backends"] == 3
    assert summary["frames_received_mean"] > 0 and summary["sessions_failed"] == 0
    assert summary["nginx_cpu_percent"] is not None and summary["nginx_cpu_percent"] >= 0


@pytest.mark.slow
def test_soak_smoke(tmp_path: Path) -> None:
    """A one-minute talk at 20x with three viewers: nothing lost anywhere, every session at the
    run's last step, every process measured."""
    summary = run_bench(tmp_path, "soak", "--minutes", "1", "--speedup", "20", "--viewers", "3",
                        "--sample-every", "1")  # fmt: skip
    assert summary["published"] >= 1000 and summary["trainer_dropped"] == 0
    assert summary["broker_received"] == summary["published"] == summary["viewer_received"]
    assert summary["broker_dropped"] == {} and summary["viewer_rejected"] == 0
    assert summary["lost_before_the_broker"] == summary["lost_before_the_viewer"] == 0
    assert summary["sessions_closed_early"] == 0
    (last,) = summary["sessions_final_steps"]  # every session at one step
    assert 0 <= summary["trainer_steps"] - last <= 10, "the run's last metrics, at its end"
    for name in ("broker", "viewer", "trainer", "sessions_client"):
        assert summary["memory_mb"][name]["start"] > 0 and summary["memory_mb"][name]["end"] > 0
    assert "tracebacks_in" not in summary
