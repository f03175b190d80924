"""A page that has nothing to show yet says so, with its axes drawn, in every state.

Before Start (a trainer started with ``--wait-for-start``) and when ``view --replay`` opens
at 0:00, the page is what the room first sees: it must read as waiting, not as broken.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from bokeh.client import ClientSession, pull_session

from protocol.endpoints import free_tcp_port
from tests.conftest import Programs, broker_and_viewer, run_cli, synthetic_trainer, wait_until
from tests.documents import header, receive
from tests.recordings import START, Feed, realistic_run, write_recording

pytestmark = pytest.mark.slow

EMPTY = {
    "What the network sees": "no sample yet",
    "First-layer weights": "none yet",
    "Accuracy per class": "no evaluation yet",
    "Current mistakes": "no evaluation yet",
}


def titles(session: ClientSession) -> list[str]:
    return [m.title.text for m in session.document.models if type(m).__name__ == "figure"]


def legend_entries(session: ClientSession) -> dict[str, bool]:
    """Each legend entry's visibility, by its label and its figure's title."""
    figures = [m for m in session.document.models if type(m).__name__ == "figure"]
    return {
        f"{fig.title.text} ({fig.y_scale.__class__.__name__}): {item.label['value']}": item.visible
        for fig in figures
        for legend in fig.legend
        for item in legend.items
    }


def says_nothing_yet(session: ClientSession) -> None:
    shown = titles(session)
    for title, words in EMPTY.items():
        assert any(t.startswith(title) and t.endswith(words) for t in shown), (title, shown)
    assert not any(legend_entries(session).values()), "no legend entry without its data"
    frames = [
        m
        for m in session.document.models
        if type(m).__name__ == "GlyphRenderer" and m.data_source.data.get("x") == [0, 1]
    ]
    assert len(frames) >= 2, "each curve plot has the points that give it axes before data"


def test_the_waiting_page_says_so_and_fills_after_start(programs: Programs, endpoint) -> None:
    broker_in, broker_out, port, _ = broker_and_viewer(programs, endpoint)
    synthetic_trainer(
        programs, broker_in, "--epochs", "1", "--steps-per-second", "40", "--wait-for-start"
    )
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:
        wait_until(
            lambda: receive([session], 0.2) or "press Start" in header(session.document),
            20,
            message="the waiting words",
        )
        says_nothing_yet(session)
        snapshot = f"{broker_out.rsplit(':', 1)[0]}:{int(broker_out.rsplit(':', 1)[1]) + 1}"
        assert run_cli("control", "start", "--broker", snapshot).returncode == 0

        def filled() -> bool:
            receive([session], 0.2)
            shown = titles(session)
            entries = legend_entries(session)
            wanted = [
                k
                for k in entries
                if k.split(": ")[1]
                in ("training (smoothed)", "test subset", "training batches (smoothed)")
            ]
            return (
                all(not t.endswith("yet") for t in shown)
                and len(wanted) == 4
                and all(entries[k] for k in wanted)
            )

        wait_until(filled, 30, message="the words gone and the legend entries shown")
        previous = [v for k, v in legend_entries(session).items() if k.endswith("previous run")]
        assert len(previous) == 2 and not any(previous), "no previous run: no entry for it"
    finally:
        session.close()


def test_a_replay_at_0_00_says_nothing_has_happened_yet(programs: Programs, tmp_path: Path) -> None:
    path = write_recording(tmp_path / "run.mcap", realistic_run(Feed("run-words"), 2.0, START))
    port = free_tcp_port()
    viewer = programs.start("view", "--replay", str(path), "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:
        receive([session], 0.5)
        says_nothing_yet(session)
        assert "0:00" in session.document.get_model_by_name("playback_position").text
    finally:
        session.close()
    assert programs.stop(viewer, signal.SIGTERM) == 0
