"""The viewer's server side: Bokeh's server for the app (:mod:`.serve`), its settings, one
message per frame (:mod:`.batching`), garbage collection kept out of the way
(:mod:`.gc_policy`), and the operations endpoints with their figures (:mod:`.ops`,
:mod:`.stats`)."""
