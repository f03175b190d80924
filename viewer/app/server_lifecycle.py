"""Per-process state for the Bokeh server: settings, and the one subscription all sessions share.

With ``--replay FILE`` the shared source is a recording played back on this process's clock
(:mod:`viewer.sources.playback`) instead of the broker subscription (:mod:`viewer.sources.live`).

Works under ``mnist-live view`` and under plain ``bokeh serve viewer/app --args --connect
tcp://127.0.0.1:5556``; the arguments arrive as ``sys.argv`` while Bokeh loads this module.
This module's top level runs once, before any fork (``--num-procs``), so it only parses; the
hub (a ZeroMQ context and a thread) starts in ``on_server_loaded``, in every server process.
"""

import argparse
import gc
import logging
import sys

from bokeh.settings import settings as bokeh_settings
from tornado.ioloop import PeriodicCallback
from tornado.process import task_id

from viewer import broadcast, pages, sources
from viewer.drawing import strokes
from viewer.drawing.room import room
from viewer.panels import presenter
from viewer.panels.looks import look
from viewer.server import batching, browser_changes, settings
from viewer.server.gc_policy import FrozenSessions
from viewer.server.stats import stats
from viewer.sources import live, playback

log = logging.getLogger("viewer")

_settings = settings.configure(settings.parse_app_args(sys.argv[1:]))
_extra = argparse.ArgumentParser(add_help=False)
_extra.add_argument("--audience-url", default=None)
presenter.set_audience_url(_extra.parse_known_args(sys.argv[1:])[0].audience_url)
_frozen = FrozenSessions()
GC_CHECK_MS = 5_000


def on_server_loaded(server_context) -> None:
    if _settings.replay:  # a recording played back: no broker
        playback.start(_settings.replay, _settings.replay_run, _settings.compare)
    else:
        live.start(_settings.connect, _settings.snapshot, _settings.curve_keys)
    batching.settle_id_setting()
    browser_changes.accept_data("drawing", strokes.acceptable)  # the pads' strokes
    if _settings.keep_drawings:  # one file per server process
        task = task_id()
        room.keep_in(_settings.keep_drawings, f"room-digits{'' if not task else f'-{task}'}.npz")
    # Bokeh checks every session's page for layout mistakes as it is built (a tenth of the
    # cost of opening one); the page is always the same, and the test suite checks it once.
    bokeh_settings.perform_document_validation.set_value(False)
    stats.watch_gc()
    # The process's frame tick and its shadow page, made now rather than by the first session
    # to open: the first page after a (re)start comes as fast as any other.
    broadcast.current(sources.current(), _settings, live=not _settings.replay)
    # Everything loaded so far lives as long as the process: take it out of the collector's
    # view, as viewer.server.gc_policy does for sessions once they have opened.
    gc.collect()
    gc.freeze()
    log.debug("hub started; %d objects frozen out of garbage collection", gc.get_freeze_count())
    PeriodicCallback(_keep_sessions_frozen, GC_CHECK_MS).start()  # on this process's loop
    if not _settings.replay:  # a replay's pages have controls: each is its own
        pages.start(look(_settings.theme, _settings.large), _settings.prebuild)


def _keep_sessions_frozen() -> None:
    done = _frozen.check(stats.sessions_open)
    if done:
        log.debug("%s (%d frozen)", done, gc.get_freeze_count())


def on_server_unloaded(server_context) -> None:
    pages.stop()
    broadcast.stop()
    sources.stop()


def on_session_created(session_context) -> None:
    stats.session_opened()
    _frozen.opened()
    document = getattr(session_context, "_document", None)  # no public sync accessor here
    if document is not None:
        presenter.guard_audience(document, _settings)


def on_session_destroyed(session_context) -> None:
    stats.session_closed()
    _frozen.closed()
