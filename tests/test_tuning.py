"""The presenter tunes the run live: a learning rate (or momentum) set mid-run reaches the trainer,
which applies it from its next step and says so (``tuned``), every page marks it on the curves,
and it is recorded and replayed."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from pathlib import Path

import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from bokeh.events import ButtonClick

from broker.clients.run_control import RunControl
from broker.recording.reader import RecordingReader
from protocol import (
    ControlCommand,
    HyperparametersTuned,
    RunStatus,
    TrainingMetrics,
    decode_control,
    encode_control,
)
from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from protocol.tokens import TOKEN_ENV
from tests.conftest import (
    Programs,
    assert_one_line_error,
    blob_dataset,
    run_cli,
    wait_until,
)
from tests.documents import header, receive
from tests.recordings import Feed
from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.control import Controls
from trainer.loop import Pacer, train
from trainer.reporter import Cadences, Reporter
from trainer.tuning import Tuning
from viewer.dashboard import Dashboard
from viewer.panels.presenter import PresenterControls
from viewer.runs.state import RunHistory
from viewer.server.settings import ViewerSettings
from viewer.sources.playback import SPEEDS

CONFIG = TrainConfig(
    hidden=(16,),
    optimizer="momentum",
    learning_rate=0.05,
    momentum=0.9,
    schedule="constant",
    batch_size=8,
    epochs=20,
    max_steps=400,
    steps_per_second=200.0,
)
"""A run slow enough (2 s) for a command to arrive in the middle of it."""


def run_in_thread(publisher, config: TrainConfig, **options) -> tuple[threading.Thread, dict]:
    """``train`` on blobs with real controls reading ``publisher``'s upstream."""
    tuning = Tuning.of(config)
    result: dict = {"tuning": tuning}
    reporter = Reporter(publisher, blob_dataset(200, 50), cadences=Cadences(metrics=0.01))
    controls = Controls(publisher, Pacer(config.steps_per_second), reporter, tuning=tuning)

    def go() -> None:
        result["run"] = train(
            blob_dataset(200, 50), config, reporter, controls=controls, tuning=tuning, **options
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, result


def test_a_new_learning_rate_applies_from_the_next_step_and_is_announced(
    collector_and_publisher,
) -> None:
    collector, publisher = collector_and_publisher
    thread, result = run_in_thread(publisher, CONFIG)
    messages = collector.take(TrainingMetrics, count=5)
    assert messages, "the run did not start"
    collector.command("set", learning_rate=0.01, momentum=0.5)
    messages += collector.drain(timeout=15)
    thread.join(10)
    assert not thread.is_alive()
    (tuned,) = [m for m in messages if isinstance(m, HyperparametersTuned)]
    assert (tuned.learning_rate, tuned.previous_learning_rate) == (0.01, 0.05)
    assert (tuned.momentum, tuned.previous_momentum) == (0.5, 0.9)
    rates = {m.step: m.learning_rate for m in messages if isinstance(m, TrainingMetrics)}
    before = [rate for step, rate in rates.items() if step <= tuned.step]
    after = [rate for step, rate in rates.items() if step > tuned.step]
    assert before and after, "metrics on both sides of the change"
    assert set(before) == {0.05} and set(after) == {0.01}
    assert result["run"].status == "completed" and result["tuning"].momentum == 0.5


def test_sgd_takes_a_learning_rate_but_has_no_momentum_to_set(
    collector_and_publisher, caplog
) -> None:
    collector, publisher = collector_and_publisher
    config = dataclasses.replace(CONFIG, optimizer="sgd")
    thread, result = run_in_thread(publisher, config)
    assert collector.take(TrainingMetrics, count=3)
    caplog.set_level("INFO", logger="trainer")
    collector.command("set", momentum=0.5)  # nothing to change
    collector.command("set", learning_rate=0.2, momentum=0.5)
    messages = collector.drain(timeout=15)
    thread.join(10)
    (tuned,) = [m for m in messages if isinstance(m, HyperparametersTuned)]
    assert (tuned.learning_rate, tuned.momentum, tuned.previous_momentum) == (0.2, None, None)
    assert "has no momentum" in caplog.text
    assert result["tuning"].momentum is None


def test_a_checkpoint_keeps_the_tuning_and_a_resumed_run_says_so(
    collector_and_publisher, tmp_path: Path
) -> None:
    collector, publisher = collector_and_publisher
    save = tmp_path / "run.npz"
    first = dataclasses.replace(CONFIG, max_steps=200)
    thread, _ = run_in_thread(publisher, first, save=save)
    assert collector.take(TrainingMetrics, count=3)
    collector.command("set", learning_rate=0.02)
    collector.drain(timeout=15)
    thread.join(10)
    saved = checkpoint.load(save)
    assert saved.tuning == {"learning_rate": 0.02, "momentum": 0.9}

    resumed = dataclasses.replace(CONFIG, max_steps=220, steps_per_second=None)
    thread, result = run_in_thread(publisher, resumed, resume=saved)
    messages = collector.drain(timeout=15)
    thread.join(10)
    (tuned,) = [m for m in messages if isinstance(m, HyperparametersTuned)]
    assert (tuned.step, tuned.learning_rate, tuned.previous_learning_rate) == (200, 0.02, 0.05)
    rates = {m.learning_rate for m in messages if isinstance(m, TrainingMetrics)}
    assert rates == {0.02} and result["tuning"].learning_rate == 0.02

    asked = dataclasses.replace(resumed, learning_rate=0.005)  # resume --lr 0.005: it wins
    thread, result = run_in_thread(publisher, asked, resume=saved)
    messages = collector.drain(timeout=15)
    thread.join(10)
    assert not [m for m in messages if isinstance(m, HyperparametersTuned)]
    assert {m.learning_rate for m in messages if isinstance(m, TrainingMetrics)} == {0.005}


def test_an_untuned_run_saves_no_tuning(collector_and_publisher, tmp_path: Path) -> None:
    collector, publisher = collector_and_publisher
    save = tmp_path / "plain.npz"
    config = dataclasses.replace(CONFIG, max_steps=20, steps_per_second=None)
    thread, _ = run_in_thread(publisher, config, save=save)
    collector.drain(timeout=15)
    thread.join(10)
    assert checkpoint.load(save).tuning is None


def test_a_damaged_tuning_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    assert checkpoint._tuning(None) is None
    with pytest.raises(ValueError, match="not a learning rate"):
        checkpoint._tuning({"learning_rate": -1})
    with pytest.raises(ValueError, match="not a learning rate"):
        checkpoint._tuning({"learning_rate": 0.1, "surprise": 1})


def test_a_replay_plays_the_recorded_hyperparameters(caplog) -> None:
    class Once:
        run_id = "replayed-run"

        def __init__(self) -> None:
            self.pending = [ControlCommand(command="set", learning_rate=0.5)]

        def poll_commands(self) -> list[ControlCommand]:
            commands, self.pending = self.pending, []
            return commands

    said: list[str] = []
    control = RunControl(Once(), lambda s, state, _m: said.append(state), set_ignored="recorded")
    caplog.set_level("INFO", logger="broker.control")
    control.between_steps(3, threading.Event())
    assert said == [] and "recorded" in caplog.text


@pytest.mark.slow
def test_a_rate_set_on_the_presenter_page_reaches_the_trainer_every_page_the_recording_and_replay(
    programs: Programs, tmp_path: Path
) -> None:
    """Every step of the chain with the real programs: presenter page -> broker -> trainer ->
    ``tuned`` -> broker -> every page (within 1 s) and the recording -> a replay of it."""
    token, recordings = "tune-secret-7", tmp_path / "recordings"
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    port = free_tcp_port()
    broker = programs.start(
        "broker", "--in", broker_in, "--out", broker_out, "--record", str(recordings),
        env={TOKEN_ENV: token},
    )  # fmt: skip
    viewer = programs.start(
        "view", "--connect", broker_out, "--port", str(port), "--presenter-token", token
    )
    trainer = programs.start(
        "train", "--connect", broker_in, "--dataset", "synthetic", "--quiet", "--hidden", "16",
        "--optimizer", "momentum", "--lr", "0.05", "--schedule", "constant",
        "--steps-per-second", "20", "--epochs", "50",
    )  # fmt: skip
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    url = f"http://127.0.0.1:{port}/"
    presenter = pull_session(url=url, arguments={"token": token})
    pages = [pull_session(url=url), pull_session(url=url), presenter]
    try:
        wait_until(
            lambda: receive(pages, 0.2) or "training" in header(presenter.document),
            30,
            message="the run on the presenter's page",
        )
        presenter.document.get_model_by_name("learning_rate").value = 0.01  # type: ignore[union-attr]
        button = presenter.document.get_model_by_name("set")
        presenter.document.callbacks.send_event(ButtonClick(button))  # sent as receive runs
        seen: dict[int, float] = {}
        deadline = time.monotonic() + 15
        while len(seen) < len(pages) and time.monotonic() < deadline:
            receive(pages, 0.03)
            for i, page in enumerate(pages):
                marks = page.document.get_model_by_name("tunings").data  # type: ignore[union-attr]
                if marks["step"] and i not in seen:
                    seen[i] = time.time()
        assert len(seen) == len(pages), f"only pages {sorted(seen)} marked the change"
        applied = wait_until(
            lambda: re.search(r"from step (\d+) on: lr 0.01", programs.output(trainer)),
            10,
            message="the trainer's word that it applied the rate",
        )
        step = int(applied.group(1))
        for page in pages:
            marks = page.document.get_model_by_name("tunings").data  # type: ignore[union-attr]
            assert marks == {"step": [step], "label": ["lr 0.01"]}
        wait_until(  # the header is refreshed once a second
            lambda: receive(pages, 0.1) or all("lr 0.01" in header(p.document) for p in pages),
            5,
            message="every header to say the new rate",
        )
        time.sleep(0.5)  # a few metrics at the new rate
    finally:
        for page in pages:
            page.close()
    assert programs.stop(trainer) in (0, 1)
    assert programs.stop(broker) == 0, programs.output(broker)

    (recording,) = recordings.glob("*.mcap")
    recorded = [r.message for r in RecordingReader(recording).messages()]
    (tuned,) = [m for m in recorded if isinstance(m, HyperparametersTuned)]
    assert (tuned.step + 1, tuned.learning_rate, tuned.previous_learning_rate) == (
        step,
        0.01,
        0.05,
    )
    lag = {i: when - tuned.sent_at for i, when in seen.items()}
    print(f"seconds from the trainer's word to each page: {lag}")
    assert max(lag.values()) < 1.0, f"seconds from the trainer's word to each page: {lag}"
    rates = {m.step: m.learning_rate for m in recorded if isinstance(m, TrainingMetrics)}
    assert {r for s, r in rates.items() if s < step} == {0.05}
    assert {r for s, r in rates.items() if s >= step} == {0.01}

    replay_port = free_tcp_port()
    replay = programs.start("view", "--replay", str(recording), "--port", str(replay_port))
    wait_until(lambda: "dashboard at" in programs.output(replay), 30, message="the replay")
    page = pull_session(url=f"http://127.0.0.1:{replay_port}/")
    try:
        marks = page.document.get_model_by_name("tunings")
        assert marks.data["step"] == [], "at 0:00 the change is still to come"  # type: ignore[union-attr]
        page.document.get_model_by_name("speed").active = len(SPEEDS) - 1  # type: ignore[union-attr]
        page.document.get_model_by_name("play").active = True  # type: ignore[union-attr]
        wait_until(
            lambda: receive([page], 0.2) or "stopped" in header(page.document),
            30,
            message="the replay to reach the end",
        )
        marks = page.document.get_model_by_name("tunings")
        assert marks.data == {"step": [step], "label": ["lr 0.01"]}  # type: ignore[union-attr]
    finally:
        page.close()


def test_set_needs_a_value_and_values_need_set() -> None:
    with pytest.raises(ValueError, match="needs a learning_rate or a momentum"):
        ControlCommand(command="set")
    with pytest.raises(ValueError, match="go with the 'set' command only"):
        ControlCommand(command="pause", learning_rate=0.1)
    with pytest.raises(ValueError, match="goes with the 'pace' command only"):
        ControlCommand(command="set", learning_rate=0.1, steps_per_second=3.0)
    with pytest.raises(ValueError):
        ControlCommand(command="set", momentum=1.0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("set",), "needs --lr"),
        (("pause", "--lr", "0.1"), "'set' command only"),
        (("set", "--lr", "0"), "--lr"),
        (("set", "--lr", "nan"), "--lr"),
        (("set", "--momentum", "1"), "--momentum"),
        (("set", "--lr", "fast"), "--lr"),
    ],
)
def test_control_set_refuses_what_it_cannot_send_in_one_line(args: tuple, words: str) -> None:
    done = run_cli("control", *args, "--broker", "tcp://127.0.0.1:1", "--timeout", "0.2")
    assert_one_line_error(done, words)
    assert "pydantic" not in done.stderr


def tuned_run() -> tuple[Feed, RunHistory]:
    feed = Feed()
    run = RunHistory(feed.run_id)
    run.apply(feed.started())
    for step in range(1, 40):
        run.apply(feed.metrics(step))
    return feed, run


def tuning(feed: Feed, step: int, lr: float, previous: float, **momenta) -> HyperparametersTuned:
    return HyperparametersTuned(
        **feed._next(), step=step, learning_rate=lr, previous_learning_rate=previous, **momenta
    )


class OneRun:
    """A hub holding one run, as a dashboard reads it."""

    def __init__(self, run: RunHistory) -> None:
        self.current, self.lock = run, threading.Lock()

    def run(self, run_id: str) -> RunHistory | None:
        return self.current if run_id == self.current.run_id else None

    def previous(self, run: RunHistory) -> None:
        return None

    def broker_silence(self) -> None:
        return None


def test_the_page_marks_each_change_on_the_curves_and_the_header_says_the_rate() -> None:
    feed, run = tuned_run()
    doc = Document()
    dashboard = Dashboard(doc, OneRun(run), ViewerSettings(), frames=True)  # type: ignore[arg-type]
    marks = doc.get_model_by_name("tunings")
    assert marks is not None and marks.data["step"] == []  # type: ignore[attr-defined]
    run.apply(tuning(feed, 20, 0.01, 0.1))
    run.apply(tuning(feed, 30, 0.01, 0.01, momentum=0.5, previous_momentum=0.9))
    dashboard.tick()
    assert marks.data == {"step": [21, 31], "label": ["lr 0.01", "lr 0.01 m 0.5"]}  # type: ignore[attr-defined]
    items = [m for m in doc.models if type(m).__name__ == "LegendItem"]
    marked = [item for item in items if item.label.value == "presenter's change"]
    assert len(marked) == 2 and all(item.visible for item in marked), "in both plots' legends"
    dashboard.header_due = 0
    dashboard.tick()
    assert "lr 0.01" in doc.get_model_by_name("header").text  # type: ignore[attr-defined]


def test_the_presenter_inputs_show_the_runs_values_and_send_only_a_change() -> None:
    feed, run = tuned_run()
    run.apply(RunStatus(**feed._next(), step=39, state="training"))
    controls = PresenterControls(Document(), ViewerSettings(presenter_token="t"), OneRun(run))  # type: ignore[arg-type]
    controls.refresh(run)
    hp = run.started.hyperparameters  # type: ignore[union-attr]
    assert controls.learning_rate.value == hp.learning_rate and not controls.set_button.disabled
    assert controls.momentum.disabled and controls.momentum.value is None, "sgd has no momentum"
    sent: list[tuple[str, dict]] = []
    controls.command = lambda action, **values: sent.append((action, values))  # type: ignore[method-assign]
    controls._set_clicked()
    assert "nothing changed" in controls.feedback.text and sent == []
    controls.learning_rate.value, controls.momentum.value = 0.01, 0.5  # typed by the presenter
    controls._set_clicked()
    assert sent == [("set", {"learning_rate": 0.01})], "only the change, no momentum for sgd"
    run.apply(tuning(feed, 39, 0.003, hp.learning_rate))
    controls.refresh(run)
    assert controls.learning_rate.value == 0.003, "the inputs follow the run's announced change"
    replayed = RunHistory("replayed")
    replayed.apply(feed.started().model_copy(update={"replayed": True, "run_id": "replayed"}))
    replayed.apply(RunStatus(run_id="replayed", seq=1, step=0, state="paused"))
    controls.refresh(replayed)
    assert controls.set_button.disabled, "a replay plays the recorded rate: nothing to set"


def test_commands_carry_no_field_an_older_receiver_would_refuse() -> None:
    """A trainer of protocol 1 forbids fields it does not know: a command that is not 'set'
    goes out with the fields it always had."""
    for command in (
        ControlCommand(command="pause"),
        ControlCommand(command="pace", steps_per_second=3.0),
        ControlCommand(command="pace"),
    ):
        sent = json.loads(encode_control(command))
        assert set(sent) <= {"command", "run_id", "steps_per_second", "sent_at"}, sent
        assert decode_control(encode_control(command)) == command
    tuned = json.loads(encode_control(ControlCommand(command="set", learning_rate=0.1)))
    assert tuned["learning_rate"] == 0.1 and "momentum" not in tuned


def test_a_learning_rate_the_protocol_cannot_carry_is_refused_at_the_start() -> None:
    done = run_cli(
        "train", "--dataset", "synthetic", "--lr", "150", "--connect", "tcp://127.0.0.1:1"
    )
    assert_one_line_error(done, "--lr")
