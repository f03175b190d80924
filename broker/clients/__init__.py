"""The broker's clients, for every program that talks to one: a publisher (trainer, replay),
the Clone subscriber (viewer, recorder) and one-shot requests (status, control, presenter)."""
