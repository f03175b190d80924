"""Summarise a recording: its runs, message kinds and counts, duration, size, and damage.

``mnist-live inspect run.mcap`` reads the file message by message, validating each like one
off the network, so it also answers "is this file whole?": a recording closed by its recorder
ends with its footer; one whose recorder was killed is "not closed"; a damaged one is read up
to the damage, and everything before it is summarised. ``--json`` prints one JSON object.

``--repair`` writes what such a file holds, up to the cut or the damage, into a new whole file
with its index and summary (``run.repaired.mcap`` beside it, or ``--to``), as ``mcap
recover`` does: the tools that read through the index (Foxglove's default path, mcap's
seeking reader) refuse a file without one. The damaged file is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.recording.format import RECORDING_METADATA
from broker.recording.reader import RecordingReader
from broker.recording.run_summary import RunSummary
from broker.recording.writer import RecordingWriter
from protocol.cli.durations import format_duration
from protocol.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.mcap", help="the recording to summarise")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="write what an unclosed or damaged recording holds, up to the cut, into a new "
        "whole, indexed file (FILE.repaired.mcap, or --to); the original is left as it is",
    )
    parser.add_argument(
        "--to", default=None, metavar="OUT.mcap", help="where --repair writes (never over a file)"
    )


@dataclass
class Summary:
    """Everything ``inspect`` reports about a file."""

    file: str
    size: int
    messages: int = 0
    whole: bool = False
    state: str = ""
    damage: str | None = None
    invalid: dict[str, int] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)
    source: str | None = None
    created: str | None = None

    @property
    def duration(self) -> float:
        if self.first_time is None or self.last_time is None:
            return 0.0
        return self.last_time - self.first_time

    def as_json(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return fields | {
            "runs": list(map(run_json, self.runs)),
            "duration": round(self.duration, 6),
        }


def run_json(run: RunSummary) -> dict[str, Any]:
    started, finished = run.started, run.finished
    return {
        "run_id": run.run_id,
        "dataset": started.dataset.name if started else None,
        "synthetic": started.dataset.synthetic if started else None,
        "architecture": run.architecture,
        "first_step": run.first_step,
        "last_step": run.last_step,
        "first_seq": run.first_seq,
        "last_seq": run.last_seq,
        "messages": run.messages,
        "status": run.status,
        "test_accuracy": finished.test_accuracy if finished else None,
        "replayed": run.replayed,
    }


def summarise(path: str) -> Summary:
    """Read the whole file (up to any damage); RecordingError if it is no recording at all."""
    reader = RecordingReader(path)
    kinds: Counter[str] = Counter()
    runs: dict[str, RunSummary] = {}
    for recorded in reader.messages():
        message = recorded.message
        kinds[message.kind] += 1
        run = runs.get(message.run_id)
        if run is None:
            run = runs[message.run_id] = RunSummary(message.run_id)
        run.add(message)
    # A message's log time is its sent_at (broker.recording.writer), which each run's summary
    # spans.
    first = min((r.first_at for r in runs.values() if r.first_at is not None), default=None)
    last = max((r.last_at for r in runs.values() if r.last_at is not None), default=None)
    about = next((m for name, m in reader.metadata if name == RECORDING_METADATA), {})
    return Summary(
        file=str(path),
        size=reader.size,
        messages=reader.read,
        whole=reader.whole,
        state=reader.describe_damage(),
        damage=reader.damage,
        invalid=dict(reader.invalid),
        first_time=first,
        last_time=last,
        kinds=dict(kinds.most_common()),
        runs=list(runs.values()),
        source=about.get("source"),
        created=about.get("created"),
    )


def format_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def render(summary: Summary) -> str:
    """The summary as a few lines and a table of runs, for a terminal."""
    lines = [f"file      {summary.file}"]
    lines.append(f"size      {format_size(summary.size)}, {summary.messages:,} messages")
    lines.append(f"state     {summary.state}")
    if summary.first_time is not None and summary.last_time is not None:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary.first_time))
        end = time.strftime("%H:%M:%S", time.localtime(summary.last_time))
        lines.append(
            f"duration  {format_duration(summary.duration, decimals=1)} ({start} to {end})"
        )
    else:
        lines.append("duration  - (no messages)")
    if summary.source:
        lines.append(f"source    {summary.source}")
    if summary.invalid:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.invalid.items()))
        lines.append(f"skipped   {sum(summary.invalid.values())} invalid message(s): {skipped}")
    if summary.kinds:
        lines.append("kinds     " + ", ".join(f"{k} {n:,}" for k, n in summary.kinds.items()))
    lines.append("")
    if not summary.runs:
        lines.append("no runs")
        return "\n".join(map(printable, lines))
    rows = [["run", "dataset", "architecture", "steps", "seq", "messages", "status"]]
    for run in summary.runs:
        about = run_json(run)
        steps = "-" if run.first_step is None else f"{run.first_step}-{run.last_step}"
        status = run.status
        if about["test_accuracy"] is not None:
            status += f" (test {about['test_accuracy']:.1%})"
        dataset = about["dataset"] or "?"
        if about["synthetic"]:
            dataset += " (synthetic)" if dataset != "synthetic" else ""
        rows.append([
            run.run_id + (" (replayed)" if run.replayed else ""),
            dataset,
            run.architecture or "?",
            steps,
            f"{run.first_seq}-{run.last_seq}",
            f"{run.messages:,}",
            status,
        ])  # fmt: skip
    lines.extend(table(rows))
    return "\n".join(map(printable, lines))


def printable(text: str) -> str:
    """``text`` with control characters escaped: names in a file must not drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def repair(path: str, to: str | None) -> str:
    """Rewrite ``path``'s readable messages into a new whole file; one line saying what."""
    reader = RecordingReader(path)
    out = Path(to) if to else reader.path.with_suffix(".repaired.mcap")
    if out.exists():
        raise CommandError(f"{out} exists; pass another --to (a recording is never overwritten)")
    writer = None
    try:
        for recorded in reader.messages():
            if writer is None:
                about = next((m for n, m in reader.metadata if n == RECORDING_METADATA), {})
                source = about.get("source", "")
                writer = RecordingWriter(out, source=f"{source} (repaired from {reader.path.name})")
            writer.write(recorded.message)
        if writer is None:
            raise CommandError(f"{path} holds no readable message; nothing to repair")
        if reader.whole:
            return f"{path} is whole already; {out} is a copy of its {reader.read:,} messages"
        return (
            f"repaired: {writer.messages:,} messages ({reader.describe_damage()}) "
            f"written whole and indexed to {out}"
        )
    except OSError as exc:
        raise CommandError(f"cannot write {out} ({exc.strerror})") from None
    finally:
        if writer is not None:
            writer.close()


def run(args: argparse.Namespace) -> int:
    if args.to is not None and not args.repair:
        raise CommandError("--to goes with --repair")
    if args.repair:
        print(printable(repair(args.file, args.to)))
        return 0
    summary = summarise(args.file)
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print(render(summary))
    sys.stdout.flush()
    return 0
