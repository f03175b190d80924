"""Per-process state for the Bokeh server: settings, and the one subscription all sessions share.

Works under ``mnist-live view`` and under plain ``bokeh serve viewer/app --args --connect
tcp://127.0.0.1:5556``; the arguments arrive as ``sys.argv`` while Bokeh loads this module.
"""

import sys

from viewer import hub, settings
from viewer.stats import stats

_settings = settings.configure(settings.parse_app_args(sys.argv[1:]))


def on_server_loaded(server_context) -> None:
    hub.start(_settings.connect, _settings.snapshot)


def on_server_unloaded(server_context) -> None:
    hub.stop()


def on_session_created(session_context) -> None:
    stats.session_opened()


def on_session_destroyed(session_context) -> None:
    stats.session_closed()
