"""One finished run as a source, for a dashboard built once and saved (``export --html``)."""

from __future__ import annotations

import threading
from typing import Any

from viewer.runs.state import RunHistory


class FixedRun:
    """A :class:`~viewer.sources.RunSource` that always shows ``run`` and nothing else."""

    def __init__(self, run: RunHistory) -> None:
        self.lock = threading.Lock()
        self._run = run

    @property
    def current(self) -> RunHistory:
        return self._run

    def run(self, run_id: str | None) -> RunHistory | None:
        return self._run if run_id == self._run.run_id else None

    def previous(self, run: RunHistory) -> RunHistory | None:
        return None

    def comparable(self) -> dict[str, RunHistory]:
        return {self._run.run_id: self._run}

    def start(self) -> None:
        pass  # nothing arrives: the run is whole

    def stop(self) -> None:
        pass

    def broker_silence(self) -> float | None:
        return None

    def figures(self) -> dict[str, Any]:
        return {
            "running": True,
            "received": self._run.messages,
            "rejected": 0,
            "last_message_age": None,
        }
