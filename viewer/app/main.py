"""Bokeh runs this once per browser session: build that session's dashboard."""

from bokeh.io import curdoc

from viewer import hub
from viewer.dashboard import Dashboard

Dashboard(curdoc(), hub.current())
