"""Bokeh runs this once per browser session: build that session's dashboard.

Presenter controls (with the wall of the room's drawings) only for a session whose URL
carried the presenter token; the controls check it again on the server for every command. A
replayed recording has playback controls instead: for every session when served to this
machine only, else for the presenter's.

The dashboard draws no frames of its own: it follows the process's broadcast
(:mod:`viewer.broadcast`), which encodes each frame once for every session. An audience page
may have been built ahead (:mod:`viewer.pages`).
"""

from bokeh.io import curdoc

from viewer import broadcast, pages, sources
from viewer.dashboard import Controls, Dashboard
from viewer.drawing.room import room
from viewer.drawing.wall import Wall
from viewer.panels.looks import session_look
from viewer.panels.playback import PlaybackControls
from viewer.panels.presenter import PresenterControls, is_presenter
from viewer.server import settings
from viewer.sources.live import Hub
from viewer.sources.playback import ReplayHub

doc = curdoc()
config = settings.current()
source = sources.current()
controls: Controls | None
presenter: PresenterControls
if config.replay:
    assert isinstance(source, ReplayHub)
    replay = source

    def allowed() -> bool:
        return config.open_controls or is_presenter(doc, config)

    controls = PlaybackControls(replay, allowed, interactive=allowed())
else:
    assert isinstance(source, Hub)
    controls = None
    if is_presenter(doc, config):
        wall = Wall(session_look(doc, config), room, lambda action: presenter.authorised(action))
        presenter = PresenterControls(doc, config, source, [wall.button], [wall.overlay])
        controls = presenter
        doc.add_periodic_callback(wall.refresh, 1000)
live = not config.replay
look = session_look(doc, config)
page = pages.take(look) if controls is None else None
dashboard = Dashboard(doc, source, config, controls, look, live=live, frames=False, page=page)
broadcast.current(source, config, live=live).follow(dashboard, controls)
