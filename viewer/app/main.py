"""Bokeh runs this once per browser session: build that session's dashboard.

Presenter controls only for a session whose URL carried the presenter token; the controls
check it again on the server for every command. A replayed recording has playback controls
instead: for every session when served to this machine only, else for the presenter's.
"""

from bokeh.io import curdoc

from viewer import sources
from viewer.dashboard import Dashboard
from viewer.panels.playback import PlaybackControls
from viewer.panels.presenter import PresenterControls, is_presenter
from viewer.server import settings
from viewer.sources.live import Hub
from viewer.sources.playback import ReplayHub

doc = curdoc()
config = settings.current()
if config.replay:
    replay = sources.current()
    assert isinstance(replay, ReplayHub)

    def allowed() -> bool:
        return config.open_controls or is_presenter(doc, config)

    playback = PlaybackControls(replay, allowed, interactive=allowed())
    Dashboard(doc, replay, config, playback, live=False)
else:
    shared = sources.current()
    assert isinstance(shared, Hub)
    controls = PresenterControls(doc, config, shared) if is_presenter(doc, config) else None
    Dashboard(doc, shared, config, controls)
