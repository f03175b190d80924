"""Compare runs: two recorded runs overlaid on ``/compare``, aligned by samples seen or by wall
time, their recipes side by side; ``view --replay a.mcap --replay b.mcap`` opens both."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bokeh.client import pull_session
from bokeh.document import Document

from protocol import Envelope, Evaluation, HyperparametersTuned, RunFinished
from protocol.endpoints import free_tcp_port
from tests.conftest import Programs, run_cli, wait_until
from tests.documents import header, receive
from tests.recordings import START, run_started, training_metrics, write_recording
from viewer.compare.overlay import aligned, samples_seen, table_html
from viewer.compare.page import MAX_RUNS, ComparePage
from viewer.panels.looks import look
from viewer.sources.live import Hub
from viewer.sources.playback import ReplayHub
from viewer.sources.recording import load, whole_runs

TRAIN_SIZE = 100


def recorded_run(run_id: str, batch: int, steps: int, period: float, t0: float) -> list[Envelope]:
    """A run of ``steps`` metrics ``period`` s apart from ``t0`` (its run_started at ``t0``),
    an evaluation every 5 steps, batch ``batch`` over 100 training examples."""
    seqs = itertools.count()
    per_epoch = -(-TRAIN_SIZE // batch)

    def envelope(t: float) -> dict[str, Any]:
        return {"run_id": run_id, "seq": next(seqs), "sent_at": t0 + t}

    out: list[Envelope] = [
        run_started(
            envelope(0.0), layers=[784, 4, 10], total_steps=steps, train_size=TRAIN_SIZE,
            batch_size=batch, epochs=-(-steps // per_epoch), steps_per_epoch=per_epoch,
        )
    ]  # fmt: skip
    for step in range(1, steps + 1):
        t = step * period
        out.append(
            training_metrics(
                envelope(t), step, loss=2.3 / step, accuracy=0.5, samples_seen=step * batch,
                speed=batch / period,
            )
        )  # fmt: skip
        if step % 5 == 0:
            out.append(
                Evaluation(
                    **envelope(t), step=step, epoch=0, accuracy=min(1.0, step / steps),
                    loss=1.0, examples=10,
                )
            )  # fmt: skip
    out.append(RunFinished(**envelope(steps * period), status="completed", step=steps, epoch=1))
    return out


@pytest.fixture
def two_recordings(tmp_path: Path) -> tuple[Path, Path]:
    """Run A: batch 4, 60 steps 50 ms apart; run B: batch 8, 30 steps 100 ms apart, an hour
    later (13 steps an epoch, the last one short: 12 x 8 + 4)."""
    a = write_recording(tmp_path / "a.mcap", recorded_run("run-a", 4, 60, 0.05, START))
    b = write_recording(tmp_path / "b.mcap", recorded_run("run-b", 8, 30, 0.1, START + 3600))
    return a, b


def test_samples_seen_counts_as_the_trainer_does_with_a_short_last_batch(two_recordings) -> None:
    runs = whole_runs([load(path) for path in two_recordings])
    b = runs["run-b"]
    steps = np.array([1, 12, 13, 14, 26, 27])
    assert samples_seen(b.started, steps).tolist() == [8, 96, 100, 108, 200, 208]
    assert samples_seen(None, steps).tolist() == steps.tolist()


def test_two_recorded_runs_overlay_aligned_by_samples_and_by_time(two_recordings) -> None:
    runs = whole_runs([load(path) for path in two_recordings])
    assert list(runs) == ["run-a", "run-b"]
    a, b = runs["run-a"], runs["run-b"]
    by_samples = {key: aligned(run, "samples") for key, run in runs.items()}
    assert len(by_samples["run-a"]["loss"]["x"]) == 60, "every metrics point of run A"
    assert len(by_samples["run-b"]["loss"]["x"]) == 30
    assert len(by_samples["run-a"]["accuracy"]["x"]) == 12
    assert len(by_samples["run-b"]["accuracy"]["x"]) == 6
    # B's last step, 30, has seen 232 samples (2 epochs of 100, then 4 x 8): A's step 58
    # (58 x 4); B's step 13 (an epoch: 12 x 8 + 4) lines up with A's step 25 (25 x 4).
    xa, xb = by_samples["run-a"]["loss"]["x"], by_samples["run-b"]["loss"]["x"]
    assert xa[57] == xb[29] == 232 and xa[-1] == 240
    assert xa[24] == xb[12] == 100
    np.testing.assert_allclose(by_samples["run-a"]["loss"]["y"], a.metrics["loss_smooth"])
    # By wall time both start at 0, an hour apart on the clock: A ends at 3 s, B at 3 s.
    by_time = {key: aligned(run, "time") for key, run in runs.items()}
    np.testing.assert_allclose(by_time["run-a"]["loss"]["x"], np.arange(1, 61) * 0.05, atol=1e-6)
    np.testing.assert_allclose(by_time["run-b"]["loss"]["x"], np.arange(1, 31) * 0.1, atol=1e-6)
    np.testing.assert_allclose(by_time["run-b"]["accuracy"]["x"], np.arange(1, 7) * 0.5, atol=1e-6)
    assert b.finished is not None and a.status == b.status == "finished"


def test_the_table_puts_the_recipes_side_by_side_and_marks_what_differs(two_recordings) -> None:
    runs = whole_runs([load(path) for path in two_recordings])
    a = runs["run-a"]
    a.apply(
        HyperparametersTuned(
            run_id="run-a", seq=a.last_seq + 1, step=29, learning_rate=0.02,
            previous_learning_rate=0.1,
        )
    )  # fmt: skip
    table = table_html(runs, {"run-a": "#111111", "run-b": "#222222"})
    rows = {
        m.group(1): re.findall(r"<td>(.*?)</td>", m.group(2))
        for m in re.finditer(r"<tr><th>([^<]+)</th>(.*?)</tr>", table)
    }
    assert rows["batch size"] == ["<b>4</b>", "<b>8</b>"], "a difference in bold"
    assert rows["optimizer"] == ["sgd", "sgd"], "the same, plain"
    assert rows["steps"] == ["<b>60 / 60</b>", "<b>30 / 30</b>"]
    assert rows["learning rate"] == ["<b>0.1 → 0.02 at step 30</b>", "<b>0.1</b>"]
    assert rows["momentum"] == ["none (sgd)", "none (sgd)"]
    assert "Choose two or more" in table_html({}, {})


def test_the_page_offers_every_run_and_draws_the_chosen_ones(two_recordings) -> None:
    a, b = (load(path) for path in two_recordings)
    hub = ReplayHub(a.pick(None), recordings=[a, b])
    doc = Document()
    page = ComparePage(doc, hub, look("light", False))
    doc.add_root(page.layout)
    page.refresh()
    assert page.picker.options == [], "nothing to offer before the runs are folded"
    hub.fold_whole()  # what playback's start does off the event loop
    page.refresh()
    assert page.picker.options == ["run-a", "run-b"] and page.picker.value == ["run-a", "run-b"]
    loss = [doc.get_model_by_name(f"compare_loss_{i}") for i in range(MAX_RUNS)]
    assert [len(s.data["x"]) for s in loss] == [60, 30, 0, 0, 0, 0]  # type: ignore[union-attr]
    assert (loss[0].data["x"][-1], loss[1].data["x"][-1]) == (240, 232)  # type: ignore[union-attr]
    page.align.active = 1  # wall time
    assert loss[1].data["x"][-1] == pytest.approx(3.0)  # type: ignore[union-attr]
    assert page.loss.xaxis[0].axis_label == "wall time (s)"
    page.align.active = 7  # no such button: what a doctored browser may send
    assert loss[1].data["x"][-1] == 232, "taken as the first alignment, not an exception"
    page.picker.value = ["run-b"]  # a browser's choice
    assert [len(s.data["x"]) for s in loss] == [30, 0, 0, 0, 0, 0]  # type: ignore[union-attr]
    assert "choose two or more" in page.note.text
    legends = [item.label.value for item in page.loss.legend[0].items if item.visible]
    assert legends == ["run-b"]


def test_a_live_hub_offers_the_runs_it_holds(two_recordings) -> None:
    hub = Hub("tcp://127.0.0.1:1")  # never started: fed by hand
    for path in two_recordings:
        for run in load(path).runs.values():
            for message in run.messages:
                hub.apply(message)
    assert list(hub.comparable()) == ["run-a", "run-b"]


@pytest.mark.slow
def test_view_serves_two_recordings_and_compare_overlays_them(
    programs: Programs, two_recordings
) -> None:
    a, b = two_recordings
    port = free_tcp_port()
    viewer = programs.start("view", "--replay", str(a), "--replay", str(b), "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    assert "1 run(s) to compare" in programs.output(viewer)
    dashboard = pull_session(url=f"http://127.0.0.1:{port}/")
    compare = pull_session(url=f"http://127.0.0.1:{port}/compare")
    try:
        assert "run-a" in header(dashboard.document), "the first file is the one played"
        doc = compare.document
        assert doc.get_model_by_name("compare_runs").options == ["run-a", "run-b"]  # type: ignore[union-attr]
        counts = [len(doc.get_model_by_name(f"compare_loss_{i}").data["x"]) for i in range(2)]  # type: ignore[union-attr]
        assert counts == [60, 30]
        table = doc.get_model_by_name("compare_table").text  # type: ignore[union-attr]
        assert "run-a" in table and "run-b" in table and "<b>8</b>" in table
        doc.get_model_by_name("compare_align").active = 1  # type: ignore[union-attr]
        wait_until(
            lambda: (
                receive([compare], 0.2)
                or compare.document.get_model_by_name("compare_loss_1").data["x"][-1] < 10
            ),  # type: ignore[union-attr]
            10,
            message="the curves on wall time",
        )
    finally:
        dashboard.close()
        compare.close()


def test_a_second_recording_that_cannot_be_read_is_a_one_line_error(
    two_recordings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not a recording")
    port = str(free_tcp_port())
    done = run_cli("view", "--replay", str(two_recordings[0]), "--replay", str(bad), "--port", port)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.mcap is not an MCAP recording" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "dashboard at" not in done.stderr
