"""``mnist-live inspect`` on whole, truncated, corrupt, empty and foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcap.reader import make_reader

from broker.recording.inspect_cli import summarise
from broker.recording.reader import RecordingReader
from protocol.cli import main
from tests.conftest import assert_one_line_error, run_cli
from tests.recordings import Feed, feed_run, write_recording


def make_recording(path: Path) -> dict:
    """Two runs (one finished) written in several flushed chunks; what they hold."""
    a, b = Feed("run-a"), Feed("run-b", synthetic=False)
    messages = [a.started(), *feed_run(a, range(1, 61), every=20)]
    messages += [a.finished(60), b.started(), b.metrics(1), b.metrics(2)]
    write_recording(path, messages, chunk=10)  # so a cut file keeps the earlier chunks
    kinds: dict[str, int] = {}
    for message in messages:
        kinds[message.kind] = kinds.get(message.kind, 0) + 1
    return {"messages": messages, "kinds": kinds}


def inspect_json(path: Path, capsys) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_whole_recording_is_summarised(tmp_path, capsys) -> None:
    path = tmp_path / "run.mcap"
    made = make_recording(path)
    summary = inspect_json(path, capsys)
    assert summary["whole"] and summary["state"] == "whole" and summary["damage"] is None
    assert summary["messages"] == len(made["messages"]) and summary["invalid"] == {}
    assert summary["kinds"] == made["kinds"]
    assert summary["size"] == path.stat().st_size and summary["source"] == "test"
    times = [m.sent_at for m in made["messages"]]
    assert summary["duration"] == pytest.approx(max(times) - min(times), abs=1e-6)
    run_a, run_b = summary["runs"]
    assert run_a["run_id"] == "run-a" and run_a["status"] == "completed"
    assert run_a["dataset"] == "synthetic" and run_a["architecture"] == "784-32-10 relu"
    assert (run_a["first_step"], run_a["last_step"]) == (1, 60)
    assert run_a["messages"] == len(made["messages"]) - 3
    assert run_b["status"] == "unfinished" and run_b["dataset"] == "mnist"
    assert (run_b["first_seq"], run_b["last_seq"]) == (0, 2)

    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "whole" in text and "run-a" in text and "unfinished" in text
    assert "metrics 62" in text
    header = next(line for line in text.splitlines() if line.startswith("run "))
    assert header.split() == ["run", "dataset", "architecture", "steps", "seq", "messages",
                              "status"]  # fmt: skip


def test_a_cut_file_is_summarised_up_to_the_cut(tmp_path, capsys) -> None:
    whole = tmp_path / "whole.mcap"
    made = make_recording(whole)
    data = whole.read_bytes()
    seen = []
    for fraction in (0.05, 0.3, 0.5, 0.8, 0.97):
        cut = tmp_path / f"cut-{fraction}.mcap"
        cut.write_bytes(data[: int(len(data) * fraction)])
        summary = inspect_json(cut, capsys)
        assert not summary["whole"]
        assert "not closed" in summary["state"] or "damaged" in summary["state"]
        assert summary["messages"] <= len(made["messages"])
        expected = made["messages"][: summary["messages"]]  # a prefix, nothing invented
        assert sum(summary["kinds"].values()) == summary["messages"]
        assert summary["kinds"] == {
            k: sum(m.kind == k for m in expected) for k in {m.kind for m in expected}
        }
        seen.append(summary["messages"])
    assert seen == sorted(seen) and seen[-1] > seen[1] > 0, seen
    assert seen[-1] == len(made["messages"]), "cut in the summary section: every message read"


def test_a_corrupt_chunk_keeps_what_came_before(tmp_path, capsys) -> None:
    path = tmp_path / "corrupt.mcap"
    made = make_recording(path)
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None and len(summary.chunk_indexes) > 2
    chunk = summary.chunk_indexes[len(summary.chunk_indexes) // 2]  # a chunk in the middle
    data = bytearray(path.read_bytes())
    middle = chunk.chunk_start_offset + chunk.chunk_length // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    summary = inspect_json(path, capsys)
    assert not summary["whole"] and "damaged" in summary["state"]
    assert summary["damage"]
    assert 0 < summary["messages"] < len(made["messages"])

    assert main(["inspect", str(path)]) == 0
    assert "damaged after" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"", "is not an MCAP recording"),
        (b"digit,label\n1,2\n" * 10, "is not an MCAP recording"),
        (None, "no such recording"),
    ],
)
def test_files_that_are_no_recording_get_one_line(tmp_path, content, complaint) -> None:
    path = tmp_path / "file.mcap"
    if content is not None:
        path.write_bytes(content)
    done = run_cli("inspect", str(path))
    assert_one_line_error(done, complaint)
    assert done.stdout == ""


def test_summarise_counts_each_kind_once_per_message(tmp_path) -> None:
    path = tmp_path / "r.mcap"
    made = make_recording(path)
    summary = summarise(str(path))
    assert sum(summary.kinds.values()) == summary.messages == len(made["messages"])
    assert [r.run_id for r in summary.runs] == ["run-a", "run-b"]


def test_names_from_the_file_cannot_drive_the_terminal(tmp_path, capsys) -> None:
    hostile = Feed("run-\x1b[2J\x07-x")
    write_recording(tmp_path / "odd.mcap", [hostile.started(), hostile.metrics(1)])
    assert main(["inspect", str(tmp_path / "odd.mcap")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "run-\\x1b[2J\\x07-x" in out


def indexed_messages(path: Path) -> list:
    """The messages as mcap's seeking reader finds them, through the file's index."""
    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None and summary.chunk_indexes, "no index"
        return [(channel.topic, message.sequence) for _, channel, message in reader.iter_messages()]


def test_repair_makes_a_cut_recording_whole_and_indexed(tmp_path, capsys) -> None:
    path = tmp_path / "cut.mcap"
    made = make_recording(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])  # as a recorder killed mid-write leaves it
    with pytest.raises(Exception):  # noqa: B017 (whatever the seeking reader raises)
        indexed_messages(path)
    kept = [(r.message.kind, r.message.seq) for r in RecordingReader(path).messages()]
    assert 0 < len(kept) < len(made["messages"])

    assert main(["inspect", str(path), "--repair"]) == 0
    repaired = tmp_path / "cut.repaired.mcap"
    assert f"repaired: {len(kept):,} messages" in capsys.readouterr().out
    assert indexed_messages(repaired) == kept, "every message up to the cut, in order"
    assert inspect_json(repaired, capsys)["whole"]
    assert main(["inspect", str(path), "--repair"]) == 2, "never over a file"
    assert "exists" in capsys.readouterr().err
