"""The dashboard's panels: each builds its figures and named sources, renders its own piece of
a run (``render(run)``, once per change for every session) and applies it; the presenter's and
the playback controls, the looks, the QR code. :mod:`viewer.dashboard` assembles them."""
