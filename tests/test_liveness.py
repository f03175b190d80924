"""A page tells a dead trainer from a quiet one, with the real programs.

A trainer killed outright sends nothing more, and every page must say so within 3 s; a paused
trainer sends a heartbeat each second, so its pages say "paused", never "silent".
"""

from __future__ import annotations

import signal
import time

import pytest
from bokeh.client import pull_session

from tests.conftest import broker_and_viewer, run_cli, wait_until
from tests.documents import header, receive


@pytest.mark.slow
def test_pages_say_when_the_trainer_dies_and_not_while_it_is_paused(programs, endpoint) -> None:
    broker_in, broker_out, port, viewer = broker_and_viewer(programs, endpoint)
    trainer = programs.start(
        "train", "--connect", broker_in, "--dataset", "synthetic", "--epochs", "50",
        "--steps-per-second", "20", "--quiet",
    )  # fmt: skip
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:

        def says(words: str) -> bool:
            receive([session], 0.2)
            return words in header(session.document)

        wait_until(lambda: says("training"), 30, message="a training run on the page")
        snapshot = broker_out.rsplit(":", 1)[0] + f":{int(broker_out.rsplit(':', 1)[1]) + 1}"
        done = run_cli("control", "pause", "--broker", snapshot)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: says("paused"), 10, message="the pause on the page")
        quiet_until = time.monotonic() + 4
        while time.monotonic() < quiet_until:
            assert not says("silent"), "a paused trainer is quiet, not silent"

        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        killed = time.monotonic()
        wait_until(lambda: says("trainer silent"), 5, interval=0.05, message="silence shown")
        shown = time.monotonic() - killed
        print(f"'trainer silent' on the page {shown:.2f} s after kill -9")
        assert shown <= 3.2, "every page says so within 3 s"
    finally:
        session.close()
    assert "Traceback" not in programs.output(viewer)
