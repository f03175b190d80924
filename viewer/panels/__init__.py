"""The dashboard's panels: each owns its figures and named sources and knows how to apply the
rows and pieces a :class:`viewer.runs.state.Changes` carries. The Dashboard assembles them."""
