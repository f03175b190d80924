"""Recording: ``mnist-live record`` and ``mnist-live broker --record DIR`` against real peers."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from mcap.reader import make_reader

from broker.clients.clone import CloneClient
from broker.clients.publisher import Publisher
from broker.clients.request import ask
from broker.forwarder import Forwarder
from broker.recording.format import RUN_METADATA
from broker.recording.reader import RecordingReader
from broker.recording.recorder import RunRecorder
from broker.recording.writer_process import file_stem
from protocol import encode
from protocol.messages import STATE_KINDS
from tests.conftest import assert_one_line_error, collect, run_cli, wait_until
from tests.recordings import Feed, feed_run
from tests.wire import STATS


def record(programs, broker: Forwarder, out: Path, *extra: str):
    return programs.start(
        "record", "--connect", broker.endpoints[1], "--snapshot", broker.snapshot_endpoint,
        "--out", str(out), *extra,
    )  # fmt: skip


def train(programs, broker_in: str, *extra: str):
    return programs.start(
        "train", "--dataset", "synthetic", "--synthetic-size", "1000,200", "--hidden", "32",
        "--quiet", "--connect", broker_in, *extra,
    )  # fmt: skip


def subscribed(broker: Forwarder, count: int = 1) -> bool:
    return broker.stats.subscriptions >= count


def publish_run(publisher: Publisher, feed: Feed, steps: range, finish: bool = False) -> None:
    """A run's messages, arrays included, through a real Publisher."""
    for message in feed_run(feed, steps, finish=finish):
        publisher.publish(message)


@pytest.mark.slow
def test_a_real_run_recorded_end_to_end_is_whole_and_self_describing(
    broker, programs, tmp_path
) -> None:
    out = tmp_path / "run.mcap"
    recorder = record(programs, broker, out, "--until-finished")
    wait_until(lambda: subscribed(broker), 10, message="the recorder's subscription")
    trainer = train(programs, broker.endpoints[0], "--max-steps", "60", "--steps-per-second", "40")
    assert trainer.wait(60) == 0, programs.output(trainer)
    assert recorder.wait(20) == 0, programs.output(recorder)

    published = dict(broker.stats.accepted)
    with open(out, "rb") as stream:  # mcap's own reader, schemas from the file itself
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None, "the file has no summary: not closed"
        counts: dict[str, int] = {}
        seqs = []
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            assert schema is not None and schema.encoding == "jsonschema"
            payload = json.loads(message.data)
            jsonschema.validate(payload, json.loads(schema.data))
            assert channel.topic == payload["kind"]
            assert message.log_time == int(payload["sent_at"] * 1e9)
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            seqs.append(payload["seq"])
        run_meta = [m for m in reader.iter_metadata() if m.name == RUN_METADATA]
    assert counts == published
    assert {"run_started", "metrics", "sample", "run_finished"} <= set(counts)
    assert sorted(seqs) == list(range(sum(published.values())))
    assert len(run_meta) == 1
    meta = run_meta[0].metadata
    assert json.loads(meta["dataset"])["name"] == "synthetic"
    assert json.loads(meta["architecture"])["layer_sizes"] == [784, 32, 10]
    assert json.loads(meta["hyperparameters"])["max_steps"] == 60

    ours = RecordingReader(out)
    assert len(list(ours.messages())) == sum(published.values())
    assert ours.whole and not ours.invalid
    log = programs.output(recorder)
    assert "recording run" in log and f"recorded {sum(published.values())} messages" in log


def test_a_recording_started_mid_run_holds_it_from_seq_0(broker, programs, tmp_path) -> None:
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    feed = Feed(publisher.run_id)
    publish_run(publisher, feed, range(0, 300))
    wait_until(lambda: broker.stats.accepted["metrics"] == 300, 10, message="the first half")

    out = tmp_path / "mid.mcap"
    recorder = record(programs, broker, out, "--until-finished")
    wait_until(lambda: subscribed(broker), 10, message="the recorder's subscription")
    second_half = publisher.seq
    publish_run(publisher, feed, range(300, 400), finish=True)
    assert recorder.wait(20) == 0, programs.output(recorder)
    publisher.close()

    reader = RecordingReader(out)
    messages = [r.message for r in reader.messages()]
    assert reader.whole
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs) and seqs[0] == 0
    # The broker keeps only the latest sample/weights of a run: the earlier ones are gone
    # from it before the recorder asked; everything else is whole from seq 0.
    assert set(range(second_half, publisher.seq)) <= set(seqs)
    assert sum(m.kind in STATE_KINDS for m in messages if m.seq < second_half) == 2
    assert sum(m.kind == "evaluation" for m in messages) == 40
    assert messages[0].kind == "run_started" and messages[-1].kind == "run_finished"
    assert sum(m.kind == "metrics" for m in messages) == 400


def test_an_existing_file_is_refused_and_force_replaces_it_only_once_recording(
    broker, programs, tmp_path
) -> None:
    out = tmp_path / "keep.mcap"
    out.write_bytes(b"an earlier recording")
    refused = record(programs, broker, out)
    assert refused.wait(20) == 2
    lines = programs.output(refused).strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "--force" in lines[0]

    forced = record(programs, broker, out, "--force", "--until-finished")
    wait_until(lambda: subscribed(broker), 10, message="the recorder's subscription")
    assert out.read_bytes() == b"an earlier recording", "replaced before anything arrived"
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    publish_run(publisher, Feed(publisher.run_id), range(0, 20), finish=True)
    assert forced.wait(20) == 0, programs.output(forced)
    publisher.close()
    reader = RecordingReader(out)
    assert len(list(reader.messages())) == publisher.seq and reader.whole
    assert not list(tmp_path.glob(".keep.mcap.*")), "the temporary name is gone"


def last_sent_at(path: Path) -> tuple[float, int]:
    reader = RecordingReader(path)
    messages = [r.message for r in reader.messages()]
    return max(m.sent_at for m in messages), len(messages)


@pytest.mark.slow
def test_a_recorder_killed_with_sigkill_loses_at_most_a_second(broker, programs, tmp_path) -> None:
    killed, kept = tmp_path / "killed.mcap", tmp_path / "kept.mcap"
    victim = record(programs, broker, killed)
    witness = record(programs, broker, kept, "--until-finished")
    wait_until(lambda: subscribed(broker, 2), 10, message="both recorders' subscriptions")
    trainer = train(programs, broker.endpoints[0], "--max-steps", "100000",
                    "--steps-per-second", "50", "--metrics-every", "0.02")  # fmt: skip
    wait_until(lambda: broker.stats.accepted["metrics"] > 150, 30, message="a few seconds of run")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    killed_at = time.time()
    time.sleep(1.0)
    programs.stop(trainer, signal.SIGINT)
    wait_until(lambda: broker.stats.accepted["run_finished"] == 1, 10, message="run_finished")
    assert witness.wait(15) == 0, programs.output(witness)  # it has written the whole run

    reader = RecordingReader(killed)
    got = [r.message for r in reader.messages()]
    assert not reader.whole and got, reader.describe_damage()
    complete = [r.message for r in RecordingReader(kept).messages()]
    assert [m.seq for m in got] == [m.seq for m in complete[: len(got)]], "a prefix of the run"
    last_before_kill = max(m.sent_at for m in complete if m.sent_at <= killed_at)
    lost = last_before_kill - max(m.sent_at for m in got)
    assert 0 <= lost <= 1.0, f"lost {lost:.3f} s of messages"

    done = run_cli("inspect", str(killed))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "not closed" in done.stdout or "damaged" in done.stdout
    assert f"{len(got):,} messages" in done.stdout

    done = run_cli("inspect", str(killed), "--repair", "--to", str(tmp_path / "whole.mcap"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "whole.mcap").open("rb") as stream:  # through the index, as Foxglove reads
        reader = make_reader(stream)
        assert reader.get_summary() is not None
        indexed = [(c.topic, message.sequence) for _, c, message in reader.iter_messages()]
    assert indexed == [(m.kind, m.seq) for m in got], "every message up to the cut"


def clone_client(out: str, snapshot: str) -> CloneClient:
    """A CloneClient that has heard from the broker (so it is subscribed)."""
    client = CloneClient(out, snapshot)
    client.start()

    def joined() -> bool:
        return client.poll(0.05) == [] and ask(snapshot, STATS, 5)["subscribers"] > 0

    wait_until(joined, 10, message="the subscription")
    return client


@pytest.mark.slow
def test_broker_record_writes_one_whole_file_per_run(programs, endpoint, tmp_path) -> None:
    in_ep, out_ep, snap = endpoint(), endpoint(), endpoint()
    directory = tmp_path / "new" / "recordings"
    broker = programs.start("broker", "--in", in_ep, "--out", out_ep, "--snapshot", snap,
                            "--record", str(directory))  # fmt: skip
    first, second = Publisher(in_ep, "run/one"), Publisher(in_ep, "run-two")
    assert first.wait_for_subscriber(10) and second.wait_for_subscriber(10)
    client = clone_client(out_ep, snap)
    a, b = Feed(first.run_id), Feed(second.run_id)
    publish_run(first, a, range(0, 50))
    publish_run(second, b, range(0, 30), finish=True)  # finishes while the other goes on
    publish_run(first, a, range(50, 80), finish=True)
    total = first.seq + second.seq
    try:
        cloned = collect(client, total, timeout=15)
    finally:
        client.close()
    assert len(cloned) == total

    def recording() -> dict:
        status = run_cli("status", "--broker", snap, timeout=30)
        assert status.returncode == 0, status.stderr
        return json.loads(status.stdout)["recording"]

    figures = wait_until(lambda: (r := recording())["messages_written"] == total and r, 10,
                         message="the recording's figures")  # fmt: skip
    assert figures["files"] == 2 and figures["dropped"] == 0 and figures["error"] is None
    assert programs.stop(broker, signal.SIGINT) == 0
    first.close()
    second.close()

    files = sorted(directory.glob("*.mcap"))
    assert [f.name for f in files] == ["run-two.mcap", "run_one.mcap"]
    for path, run_id in ((files[0], "run-two"), (files[1], "run/one")):
        reader = RecordingReader(path)
        recorded = [r.message for r in reader.messages()]
        assert reader.whole, reader.describe_damage()
        expected = [m for m in cloned if m.run_id == run_id]
        assert [encode(m) for m in recorded] == [encode(m) for m in expected]
    assert "Traceback" not in programs.output(broker)


@pytest.mark.slow
def test_a_restarted_broker_never_overwrites_a_run_file(programs, endpoint, tmp_path) -> None:
    in_ep, out_ep, snap = endpoint(), endpoint(), endpoint()
    args = ("broker", "--in", in_ep, "--out", out_ep, "--snapshot", snap, "--record", str(tmp_path))
    broker = programs.start(*args)
    publisher = Publisher(in_ep)
    assert publisher.wait_for_subscriber(10)
    publish_run(publisher, Feed(publisher.run_id), range(0, 40))
    wait_until(lambda: ask(snap, STATS, 5)["recording"]["messages_written"]
               == publisher.seq, 10, message="the whole run recorded")  # fmt: skip
    assert programs.stop(broker, signal.SIGINT) == 0
    broker = programs.start(*args)  # the publisher re-sends its run to the new broker
    second = tmp_path / f"{publisher.run_id}-1.mcap"
    wait_until(lambda: publisher.poll_commands() == [] and second.exists(), 15,
               message="the re-published run's own file")  # fmt: skip
    wait_until(lambda: publisher.poll_commands() == [] and not publisher._replay, 10,
               message="the whole re-publish")  # fmt: skip
    whole = [r.message for r in RecordingReader(tmp_path / f"{publisher.run_id}.mcap").messages()]
    # A re-publish sends the latest sample/weights only; everything else again, in order.
    latest = {m.kind: m.seq for m in whole}
    republished = [m.seq for m in whole if m.kind not in STATE_KINDS or m.seq == latest[m.kind]]
    wait_until(lambda: ask(snap, STATS, 5)["recording"]["messages_written"]
               >= len(republished), 10, message="the re-published run recorded")  # fmt: skip
    assert programs.stop(broker, signal.SIGINT) == 0
    publisher.close()
    assert [m.seq for m in whole] == list(range(publisher.seq)), "the first file is untouched"
    reader = RecordingReader(second)
    again = [r.message for r in reader.messages()]
    assert reader.whole
    assert [m.seq for m in again] == republished


def test_an_unwritable_record_directory_is_one_line_at_start(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = run_cli("broker", "--record", str(blocker / "sub"))
    assert_one_line_error(done, "--record")


WRAPPED_BROKER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from protocol.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_disk_error_stops_the_recording_not_the_forwarding(programs, endpoint, tmp_path) -> None:
    in_ep, out_ep, snap = endpoint(), endpoint(), endpoint()
    broker = programs.start(
        "broker", "--in", in_ep, "--out", out_ep, "--snapshot", snap,
        "--record", str(tmp_path / "rec"), python_args=("-c", WRAPPED_BROKER, "4000"),
    )  # fmt: skip
    publisher = Publisher(in_ep)
    assert publisher.wait_for_subscriber(10)
    client = clone_client(out_ep, snap)
    publish_run(publisher, Feed(publisher.run_id), range(0, 400))
    try:
        cloned = collect(client, publisher.seq, timeout=15)
    finally:
        client.close()
    assert len(cloned) == publisher.seq, "forwarding went on"
    recording = wait_until(lambda: ask(snap, STATS, 5)["recording"]["error"], 10,
                           message="the recording's error")  # fmt: skip
    assert "File too large" in recording
    publisher.close()
    assert programs.stop(broker, signal.SIGINT) == 0
    output = programs.output(broker)
    assert "recording stopped (forwarding goes on)" in output and "Traceback" not in output
    (path,) = (tmp_path / "rec").glob("*.mcap")
    reader = RecordingReader(path)
    list(reader.messages())  # what reached the disk is still readable: no exception
    assert not reader.whole and path.stat().st_size <= 4000


@pytest.mark.slow
def test_a_writer_that_cannot_keep_up_costs_the_recording_not_the_broker(tmp_path) -> None:
    recorder = RunRecorder(tmp_path, queue_batches=2)
    feed = Feed("run-x")
    messages = [feed.started()] + [feed.weights(step, tiles=64) for step in range(80)]
    try:
        wait_until(lambda: recorder.stats()["files"] == 0 and recorder._report, 10,
                   message="the writer's first report")  # fmt: skip
        recorder.process.send_signal(signal.SIGSTOP)  # a writer (or disk) that has stalled
        started = time.monotonic()
        for _ in range(400):
            for message in messages:
                recorder.submit(message, encode(message))
            recorder.flush()
            if recorder.dropped["queue_full"]:
                break
        assert recorder.dropped["queue_full"] > 0, "the hand-over is bounded"
        assert time.monotonic() - started < 30, "and it never waited for the writer"
        assert recorder.stats()["dropped_by_reason"]["queue_full"] > 0
    finally:
        recorder.process.send_signal(signal.SIGCONT)
        recorder.close()
    assert recorder.process.returncode == 0
    (path,) = tmp_path.glob("*.mcap")
    reader = RecordingReader(path)
    written = list(reader.messages())
    assert reader.whole and written[0].message.kind == "run_started"
    assert recorder.stats()["messages_written"] == len(written)


@pytest.mark.slow
def test_the_last_batch_waits_for_a_slow_writer_at_close(tmp_path) -> None:
    """The batch handed over at close often holds run_finished: it is not dropped for want of
    room, as batches are while the broker runs."""
    recorder = RunRecorder(tmp_path, queue_batches=1)
    feed = Feed("run-y")
    try:
        wait_until(lambda: recorder._report, 10, message="the writer's first report")
        recorder.process.send_signal(signal.SIGSTOP)  # a writer (or disk) that has stalled
        recorder.submit(feed.started(), encode(feed.started()))
        for step in range(400):
            recorder.flush()
            if recorder.dropped["queue_full"]:
                break
            message = feed.weights(step, tiles=64)
            recorder.submit(message, encode(message))
        assert recorder.dropped["queue_full"] > 0, "the queue is full"
        last = feed.finished(400)
        recorder.submit(last, encode(last))
        threading.Timer(0.5, recorder.process.send_signal, [signal.SIGCONT]).start()
    except BaseException:
        recorder.process.send_signal(signal.SIGCONT)
        raise
    finally:
        recorder.close()
    assert recorder.process.returncode == 0
    (path,) = tmp_path.glob("*.mcap")
    written = [r.message for r in RecordingReader(path).messages()]
    assert written[-1].kind == "run_finished" and written[-1].step == 400


def test_run_ids_become_safe_file_names() -> None:
    assert file_stem("20261201-043445-cc8bfd") == "20261201-043445-cc8bfd"
    assert file_stem("run/one") == "run_one"
    assert "/" not in file_stem("../../etc/passwd") and not file_stem("../x").startswith(".")
    assert file_stem("...") == "run"
    assert os.sep not in file_stem("a/b\\c")


def test_batches_reach_the_writer_as_plain_frames_never_pickles() -> None:
    from broker.recording.batches import pack_batch, unpack_batch

    batch = [[b"metrics", b'{"seq":0}'], [b"sample", b'{"seq":1}', bytes(range(256)) * 3]]
    body = pack_batch(batch)
    assert unpack_batch(body) == batch
    assert b"pickle" not in body and not body.startswith(b"\x80")  # no pickle protocol header
    for broken in (body[:-1], body[:5], b"\xff\xff\xff\xff", b"\x01\x00\x00\x00" + body[4:]):
        with pytest.raises(ValueError):
            unpack_batch(broken)
