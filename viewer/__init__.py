"""The live dashboard: a Bokeh server app fed by one ZeroMQ subscription per process."""
