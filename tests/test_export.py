"""``mnist-live export``: a recording as CSV tables and as a standalone dashboard page."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli, wait_until
from tests.recordings import START, Feed, realistic_run, write_recording
from viewer.panels import weights
from viewer.panels.pictures import decode
from viewer.runs.state import RunHistory


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("export", *args, timeout=120)


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture
def runs() -> tuple[list, list]:
    first = realistic_run(Feed("run-one"), seconds=3.0)
    second = realistic_run(Feed("run-two", synthetic=False), seconds=2.0, start=START + 60)
    return first, second


@pytest.fixture
def recording(tmp_path: Path, runs: tuple[list, list]) -> Path:
    return write_recording(tmp_path / "two.mcap", *runs)


def test_csv_holds_every_metric_evaluation_and_run(tmp_path: Path, recording: Path, runs) -> None:
    out = tmp_path / "tables"
    done = export(str(recording), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    messages = [m for run in runs for m in run]

    metrics = table(out / "metrics.csv")
    sent = [m for m in messages if m.kind == "metrics"]
    assert len(metrics) == len(sent)
    for row, message in zip(metrics, sent, strict=True):
        assert row["run_id"] == message.run_id and int(row["step"]) == message.step
        assert float(row["loss"]) == message.loss
        assert float(row["batch_accuracy"]) == message.batch_accuracy
        assert float(row["sent_at"]) == pytest.approx(message.sent_at, abs=1e-6)

    evaluations = table(out / "evaluations.csv")
    sent = [m for m in messages if m.kind == "evaluation"]
    assert len(evaluations) == len(sent)
    for row, message in zip(evaluations, sent, strict=True):
        assert (row["run_id"], int(row["step"]), row["split"]) == (
            message.run_id,
            message.step,
            message.split,
        )
        assert float(row["accuracy"]) == message.accuracy and float(row["loss"]) == message.loss
        per_class = [float(row[f"class_{i}_accuracy"]) for i in range(10)]
        assert per_class == message.per_class_accuracy

    summary = {row["run_id"]: row for row in table(out / "runs.csv")}
    assert list(summary) == ["run-one", "run-two"]
    for run in runs:
        row, started, ended = summary[run[0].run_id], run[0], run[-1]
        assert row["dataset"] == started.dataset.name
        assert row["synthetic"] == str(started.dataset.synthetic)
        assert row["layer_sizes"] == "784-32-10" and row["activation"] == "relu"
        assert float(row["learning_rate"]) == started.hyperparameters.learning_rate
        assert int(row["batch_size"]) == started.hyperparameters.batch_size
        assert row["status"] == ended.status == "completed"
        assert float(row["test_accuracy"]) == ended.test_accuracy
        assert int(row["final_step"]) == ended.step
        assert int(row["messages"]) == sum(
            1 for m in run if m.kind != "model" and m.kind not in ("sample", "weights")
        )


def test_run_picks_one_and_existing_output_needs_force(tmp_path: Path, recording: Path) -> None:
    out = tmp_path / "one"
    assert export(str(recording), "--csv", str(out), "--run", "run-two").returncode == 0
    assert {row["run_id"] for row in table(out / "metrics.csv")} == {"run-two"}
    assert [row["run_id"] for row in table(out / "runs.csv")] == ["run-two"]

    again = export(str(recording), "--csv", str(out))
    assert_one_line_error(again, "metrics.csv exists; pass --force")
    assert {row["run_id"] for row in table(out / "metrics.csv")} == {"run-two"}, "kept"
    assert export(str(recording), "--csv", str(out), "--force").returncode == 0
    assert {row["run_id"] for row in table(out / "metrics.csv")} == {"run-one", "run-two"}

    page = tmp_path / "page.html"
    page.write_text("keep me")
    fresh = tmp_path / "fresh"
    both = export(str(recording), "--csv", str(fresh), "--html", str(page))
    assert_one_line_error(both, "page.html exists; pass --force")
    assert not fresh.exists(), "nothing is written when any output would be refused"
    assert page.read_text() == "keep me"
    nowhere = export(str(recording), "--csv", str(fresh), "--html", str(tmp_path / "no/page.html"))
    assert_one_line_error(nowhere, "no directory")
    assert not fresh.exists(), "nor when the page's directory is missing"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["{missing}", "--csv", "{out}"], "no such recording"),
        (["{junk}", "--csv", "{out}"], "is not an MCAP recording"),
        (["{junk}", "--html", "{out}/page.html"], "is not an MCAP recording"),
        (["{good}"], "say what to write"),
        (["{good}", "--csv", "{out}", "--run", "nope"], "has no run 'nope'"),
        (["{good}", "--html", "{out}/page.html", "--run", "nope"], "has no run 'nope'"),
        (["{good}", "--html", "{out}/no/such/dir/page.html"], "no directory"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, recording: Path, args: list[str], words: str
) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not a recording\n" * 20)
    names = {"missing": tmp_path / "none.mcap", "junk": junk, "good": recording, "out": tmp_path}
    done = export(*(a.format(**names) for a in args))
    assert_one_line_error(done, words)
    assert not (tmp_path / "page.html").exists() and not (tmp_path / "metrics.csv").exists()


def test_a_damaged_recording_is_exported_up_to_the_damage(tmp_path: Path, runs) -> None:
    path = write_recording(tmp_path / "cut.mcap", *runs, chunk=20)  # as every half second
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # as a recorder killed mid-run leaves it
    out = tmp_path / "tables"
    done = export(str(path), "--csv", str(out), "--html", str(tmp_path / "page.html"))
    assert done.returncode == 0, done.stderr
    assert "exporting what is whole" in done.stderr and "Traceback" not in done.stderr
    metrics = table(out / "metrics.csv")
    sent = [m for run in runs for m in run if m.kind == "metrics"]
    assert 0 < len(metrics) < len(sent)
    assert [int(r["step"]) for r in metrics] == [m.step for m in sent[: len(metrics)]]
    assert (tmp_path / "page.html").stat().st_size > 0


def test_the_page_has_everything_inlined(tmp_path: Path, recording: Path) -> None:
    page = tmp_path / "run.html"
    done = export(str(recording), "--html", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "<title>MNIST Live: run run-one</title>" in text
    remote = re.findall(r"<(?:script|link)\b[^>]*(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text)
    assert remote == [], remote
    assert "Bokeh" in text and '"name":"loss"' in text.replace(" ", "")
    again = export(str(recording), "--html", str(page))
    assert again.returncode == 2 and "run.html exists; pass --force" in again.stderr


READ_PAGE = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const rows = (name) => {
  const source = doc.get_model_by_name(name);
  if (!source) return -1;
  const data = source.data;
  const values = data instanceof Map ? data.get('step') || data.values().next().value
                                     : Object.values(data)[0];
  return values ? values.length : 0;
};
let canvases = 0;
const walk = (node) => {
  if (node.tagName === 'CANVAS' && node.width > 0 && node.height > 0) canvases += 1;
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.children || []) walk(child);
};
walk(document.body);
const header = doc.get_model_by_name('header');
const drawn = doc.get_model_by_name('weights_pixels');
const image = drawn ? (drawn.data instanceof Map ? drawn.data.get('image') : drawn.data.image) : [];
return {loss: rows('loss'), accuracy: rows('accuracy'), weights: rows('weights'),
        confusion: rows('confusion'), canvases: canvases, header: header ? header.text : '',
        weights_pixels: image && image.length ? Array.from(image[0]) : null};
"""


@pytest.mark.browser
def test_the_page_opens_in_a_browser_with_the_curves_drawn(
    tmp_path: Path, recording: Path, runs, browser
) -> None:
    page = tmp_path / "run.html"
    assert export(str(recording), "--html", str(page), "--run", "run-two").returncode == 0
    browser.get(page.as_uri())
    state = wait_until(
        lambda: (
            (s := browser.execute_script(READ_PAGE))
            and s["canvases"] >= 6
            and s["weights_pixels"]
            and s
        ),
        15,
        message="the page's plots and its decoded pictures",
    )
    metrics = sum(1 for m in runs[1] if m.kind == "metrics")
    assert state["loss"] == metrics and state["accuracy"] > 0, state
    assert state["weights"] == 1 and state["confusion"] == 100, state
    last = RunHistory("run-two")
    last.apply([m for m in runs[1] if m.kind == "weights"][-1])
    mosaic = decode(weights.render(last)["weights"])
    assert mosaic is not None and state["weights_pixels"] == mosaic.ravel().tolist()
    assert "finished" in state["header"] and "run-two" in state["header"]
    requests = [
        entry["message"]
        for entry in browser.get_log("performance")
        if "Network.requestWillBeSent" in entry["message"]
    ]
    assert not [r for r in requests if '"url":"http' in r.replace(" ", "")], "no network at all"


def test_a_page_into_a_read_only_folder_is_one_line_naming_the_page(
    tmp_path: Path, recording: Path
) -> None:
    import os
    import subprocess

    folder = tmp_path / "shelf"
    folder.mkdir()
    folder.chmod(0o555)
    mounted = False
    if os.access(folder, os.W_OK):  # root ignores modes: a read-only mount instead
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"no read-only folder to be had here: {done.stderr.strip()}")
        mounted = True
    try:
        done = export(str(recording), "--html", str(folder / "page.html"))
        assert_one_line_error(done, f"cannot write {folder / 'page.html'}")
        assert "choose a folder you can write to" in done.stderr and ".tmp" not in done.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        folder.chmod(0o755)
