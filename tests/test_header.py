"""The header's speed and ETA, from the trainer's own measured rate, with the real programs.

At ``--steps-per-second 20`` and batch 32 the trainer cannot train more than 640 samples/s;
the page must say so (within 10%), and its ETA must match the time the run really takes to
finish (within 10%), where a rate per 50 ms metrics window said 851 samples/s.
"""

from __future__ import annotations

import re
import time

import pytest
from bokeh.client import pull_session

from tests.conftest import broker_and_viewer, synthetic_trainer, wait_until
from tests.documents import header, receive

PACE, BATCH = 20, 32


def eta_seconds(text: str) -> float | None:
    match = re.search(r"ETA (?:(\d+)m )?(\d+)s", text)
    return None if match is None else int(match.group(1) or 0) * 60 + int(match.group(2))


def speed(text: str) -> float | None:
    match = re.search(r"([\d,]+) samples/s", text)
    return None if match is None else float(match.group(1).replace(",", ""))


@pytest.mark.slow
def test_a_paced_run_shows_its_true_speed_and_eta(programs, endpoint) -> None:
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    synthetic_trainer(
        programs,
        broker_in,
        "--epochs",
        "2",  # ~31 s: the readings fall where 10% of what is left exceeds the header's period
        "--batch-size",
        str(BATCH),
        "--steps-per-second",
        str(PACE),
    )
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:

        def text() -> str:
            receive([session], 0.1)
            return header(session.document)

        wait_until(lambda: "training" in text(), 30, message="training on the page")
        time.sleep(4)  # a few seconds of the rate window
        readings = []
        for _ in range(10):
            shown = text()
            readings.append((time.monotonic(), speed(shown), eta_seconds(shown)))
            time.sleep(0.3)
        wait_until(lambda: "finished" in text(), 60, interval=0.05, message="the run's end")
        finished = time.monotonic()
    finally:
        session.close()
    for read_at, shown_speed, shown_eta in readings:
        assert shown_speed is not None and shown_eta is not None, readings
        assert abs(shown_speed - PACE * BATCH) <= 0.1 * PACE * BATCH, readings
        remaining = finished - read_at
        assert abs(shown_eta - remaining) <= max(0.1 * remaining, 1.0), (shown_eta, remaining)
    print(
        f"shown {[r[1] for r in readings]} samples/s; ETA {readings[0][2]} s for "
        f"{finished - readings[0][0]:.1f} s"
    )
