"""Bokeh runs this once per browser session: build that session's dashboard.

Presenter controls only for a session whose URL carried the presenter token; the controls
check it again on the server for every command.
"""

from bokeh.io import curdoc

from viewer import hub, settings
from viewer.dashboard import Dashboard
from viewer.presenter import PresenterControls, is_presenter

doc = curdoc()
config = settings.current()
shared = hub.current()
controls = PresenterControls(doc, config, shared) if is_presenter(doc, config) else None
Dashboard(doc, shared, config, controls)
