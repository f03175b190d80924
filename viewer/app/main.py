"""Bokeh runs this once per browser session: build that session's dashboard.

Presenter controls only for a session whose URL carried the presenter token; the controls
check it again on the server for every command. A replayed recording has playback controls
instead: for every session when served to this machine only, else for the presenter's.
"""

from bokeh.io import curdoc

from viewer import hub, replay_hub, settings
from viewer.dashboard import Dashboard
from viewer.panels.playback import PlaybackControls
from viewer.presenter import PresenterControls, is_presenter

doc = curdoc()
config = settings.current()
if config.replay:
    replay = replay_hub.current()

    def allowed() -> bool:
        return config.open_controls or is_presenter(doc, config)

    playback = PlaybackControls(replay, allowed, interactive=allowed())
    Dashboard(doc, replay, config, playback, live=False)
else:
    shared = hub.current()
    controls = PresenterControls(doc, config, shared) if is_presenter(doc, config) else None
    Dashboard(doc, shared, config, controls)
