"""The comparing room: ``/compare`` overlays the curves of runs the process holds."""
