"""The room draws: each session's pad, its strokes' bounds, the raster MNIST would have made
of them, and the process's room of pads that read again with each new model."""
