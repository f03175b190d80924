"""A recording as files other tools open: CSV tables, or the dashboard as one standalone page.

The CSV files hold one row per message of the kinds worth analysing, with a ``run_id`` column
so one set of files covers every run of a recording. The HTML page is the dashboard itself,
built by the same panels from a :class:`viewer.runs.state.RunHistory` folded with the whole run,
with Bokeh's JavaScript inlined and no callbacks: it opens from disk, without a server or a
network. Outputs are written to a temporary name and renamed, so a failed export leaves
nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.recording.reader import RecordingReader
from broker.recording.run_summary import RunSummary
from protocol import (
    Evaluation,
    TrainingMetrics,
)
from protocol.errors import CommandError
from viewer.runs.state import RunHistory
from viewer.sources.fixed import FixedRun
from viewer.sources.recording import fold, load

log = logging.getLogger("viewer.export")

CSV_FILES = ("metrics.csv", "evaluations.csv", "runs.csv")
METRIC_FIELDS = (
    "step",
    "epoch",
    "samples_seen",
    "loss",
    "batch_accuracy",
    "learning_rate",
    "samples_per_second",
)
EVALUATION_FIELDS = ("step", "epoch", "split", "accuracy", "loss", "examples")
RUN_FIELDS = (
    "run_id",
    "dataset",
    "synthetic",
    "train_size",
    "validation_size",
    "test_size",
    "class_names",
    "layer_sizes",
    "activation",
    "optimizer",
    "learning_rate",
    "momentum",
    "weight_decay",
    "schedule",
    "batch_size",
    "epochs",
    "max_steps",
    "seed",
    "total_steps",
    "steps_per_epoch",
    "start_step",
    "status",
    "final_step",
    "test_accuracy",
    "messages",
    "started_at",
    "ended_at",
    "message",
)


def run_row(summary: RunSummary) -> dict[str, Any]:
    """What runs.csv says about one run."""
    row: dict[str, Any] = {"run_id": summary.run_id, "messages": summary.messages}
    if started := summary.started:
        data, hp = started.dataset, started.hyperparameters
        row |= {
            "dataset": data.name,
            "synthetic": data.synthetic,
            "train_size": data.train_size,
            "validation_size": data.validation_size,
            "test_size": data.test_size,
            "class_names": ";".join(data.class_names),
            "layer_sizes": "-".join(map(str, started.architecture.layer_sizes)),
            "activation": started.architecture.activation,
            "total_steps": started.total_steps,
            "steps_per_epoch": started.steps_per_epoch,
            "start_step": started.start_step,
            **{name: getattr(hp, name) for name in RUN_FIELDS if name in type(hp).model_fields},
        }
    finished = summary.finished
    row |= {
        "status": finished.status if finished else f"unfinished ({summary.state or 'waiting'})",
        "final_step": finished.step if finished else (summary.last_step or 0),
        "test_accuracy": finished.test_accuracy if finished else None,
        "message": finished.message if finished else "",
        "started_at": summary.first_at,
        "ended_at": summary.last_at,
    }
    return row


@dataclass
class Tables:
    """The rows of the three CSV files, for the runs asked for."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, RunSummary] = field(default_factory=dict)
    classes: int = 0


def read_tables(reader: RecordingReader, run_id: str | None) -> Tables:
    """One pass over the recording (pictures and parameters skipped: no column holds them)."""
    tables = Tables()
    kinds = ("run_started", "metrics", "evaluation", "status", "run_finished")
    for recorded in reader.messages(kinds):
        message = recorded.message
        if run_id is not None and message.run_id != run_id:
            continue
        summary = tables.runs.setdefault(message.run_id, RunSummary(message.run_id))
        summary.add(message)
        start = summary.first_at or message.sent_at
        common = {"run_id": message.run_id, "sent_at": message.sent_at}
        common["elapsed"] = round(message.sent_at - start, 6)
        match message:
            case TrainingMetrics():
                tables.metrics.append(common | {f: getattr(message, f) for f in METRIC_FIELDS})
            case Evaluation():
                row = common | {f: getattr(message, f) for f in EVALUATION_FIELDS}
                for i, accuracy in enumerate(message.per_class_accuracy):
                    row[class_column(i)] = accuracy
                tables.classes = max(tables.classes, len(message.per_class_accuracy))
                tables.evaluations.append(row)
    return tables


def class_column(i: int) -> str:
    return f"class_{i}_accuracy"


def csv_text(fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def check_outputs(paths: Iterable[Path], force: bool) -> None:
    """Refuse to overwrite unless told to: an export may sit next to work worth keeping."""
    for path in paths:
        if path.is_dir():
            raise CommandError(f"{path} is a directory; give a file name")
        if path.exists() and not force:
            raise CommandError(f"{path} exists; pass --force to overwrite it")


def check_html_output(path: Path, force: bool) -> None:
    """What :func:`check_outputs` refuses, and a page whose directory does not exist."""
    check_outputs([path], force)
    if not path.parent.is_dir():
        raise CommandError(f"--html {path}: no directory {path.parent}")


def write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all; a failure names ``path`` and its folder,
    never the temporary file next to it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise CommandError(
            f"cannot write {path}: {exc.strerror or exc} in {path.parent.resolve()}; "
            "choose a folder you can write to"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def export_csv(
    recording: str | Path, directory: str | Path, run_id: str | None, force: bool
) -> Tables:
    """Write metrics.csv, evaluations.csv and runs.csv into ``directory`` (made if missing)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"--csv {directory} is a file; give a directory")
    targets = [directory / name for name in CSV_FILES]
    check_outputs(targets, force)
    reader = RecordingReader(recording)
    tables = read_tables(reader, run_id)
    _check_runs(reader, tables.runs, run_id)
    warn_if_damaged(reader.path, reader.note())
    directory.mkdir(parents=True, exist_ok=True)
    metric_fields = ("run_id", *METRIC_FIELDS, "sent_at", "elapsed")
    evaluation_fields = (
        "run_id",
        *EVALUATION_FIELDS,
        "sent_at",
        "elapsed",
        *(class_column(i) for i in range(tables.classes)),
    )
    texts = (
        csv_text(metric_fields, tables.metrics),
        csv_text(evaluation_fields, tables.evaluations),
        csv_text(RUN_FIELDS, map(run_row, tables.runs.values())),
    )
    for target, text in zip(targets, texts, strict=True):
        write_atomically(target, text)
    return tables


def _check_runs(reader: RecordingReader, runs: Iterable[str], run_id: str | None) -> None:
    runs = list(runs)
    if runs:
        return
    if run_id is not None:
        raise CommandError(f"{reader.path} has no run {run_id!r}; 'mnist-live inspect' lists them")
    raise CommandError(f"{reader.path} holds no run ({reader.describe_damage()})")


def warn_if_damaged(path: str | Path, note: str) -> None:
    """One warning for a recording that was not read whole (``note`` from the reader)."""
    if note != "whole":
        log.warning("%s: %s; exporting what is whole", path, note)


def page_html(history: RunHistory, theme: str = "light", large: bool = False) -> str:
    """The dashboard of ``history`` as one HTML page with everything inlined."""
    from bokeh.core.templates import get_env
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.resources import INLINE
    from jinja2 import ChoiceLoader, FileSystemLoader

    from viewer.dashboard import Dashboard
    from viewer.panels.looks import look
    from viewer.server.serve import APP_DIR
    from viewer.server.settings import ViewerSettings

    doc = Document()
    settings = ViewerSettings(theme="dark" if theme == "dark" else "light", large=large)
    Dashboard(doc, FixedRun(history), settings, look=look(settings.theme, large), static=True)
    page = (APP_DIR / "templates" / "index.html").read_text()  # the served page's own look
    page = re.sub(
        r"{% block title %}.*?{% endblock %}", "{% block title %}{{ title }}{% endblock %}", page
    )
    env = get_env()  # Bokeh's (its base template), and ours for the page's includes
    env.loader = ChoiceLoader([FileSystemLoader(APP_DIR / "templates"), env.loader])  # type: ignore[list-item]
    template = env.from_string(page)
    # The static page's widgets keep the Python callbacks the live page has; Bokeh warns that
    # they cannot run in a file, which is known and harmless here (the page needs none).
    embed_log = logging.getLogger("bokeh.embed.util")
    level = embed_log.level
    embed_log.setLevel(logging.ERROR)
    try:
        return file_html(
            doc,
            INLINE,
            title=f"MNIST Live: run {history.run_id}",
            template=template,
            template_variables=dict(doc.template_variables),
        )
    finally:
        embed_log.setLevel(level)


def export_html(
    recording: str | Path,
    out: str | Path,
    run_id: str | None,
    force: bool,
    theme: str = "light",
    large: bool = False,
) -> RunHistory:
    """Write the standalone page of one run (``run_id``, else the recording's longest)."""
    out = Path(out)
    check_html_output(out, force)
    loaded = load(recording, models=False)  # a saved page has no pad to read with
    run = loaded.pick(run_id)
    warn_if_damaged(recording, loaded.note)
    history = fold(run, len(run.messages), replayed=False)
    write_atomically(out, page_html(history, theme, large))
    return history
