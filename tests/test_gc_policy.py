"""Open sessions are frozen out of garbage collection; closed ones are reclaimed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from viewer.server.gc_policy import FrozenSessions


class Model:
    """Stands for a session's dashboard: objects tied in a reference cycle."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_opened_sessions_are_frozen_and_closed_ones_freed_once_enough_close() -> None:
    policy = FrozenSessions()
    assert policy.check(sessions_open=0) is None  # nothing happened, nothing done
    frozen_before = gc.get_freeze_count()
    sessions = [Model() for _ in range(12)]
    for _ in range(len(sessions)):
        policy.opened()
    assert "12 new sessions frozen" in (policy.check(sessions_open=12) or "")
    assert gc.get_freeze_count() >= frozen_before + 12

    watched = [weakref.ref(s) for s in sessions]
    del sessions
    gc.collect()
    assert all(ref() is not None for ref in watched), "frozen cycles were collected"

    policy.closed()  # 1 closed, 11 still open: fewer than a quarter of them
    assert policy.check(sessions_open=11) is None
    assert all(ref() is not None for ref in watched)
    policy.closed()  # 2 closed, 10 open: a quarter of them
    assert "2 closed sessions reclaimed" in (policy.check(sessions_open=10) or "")
    assert all(ref() is None for ref in watched), "closed sessions' cycles were kept"
    assert policy.reclaimed >= 12
    assert policy.check(sessions_open=10) is None
