"""Train a NumPy MLP on MNIST-format data and publish its progress live."""
