"""What a ``model`` message computes: its parameters as layers, and the forward pass.

The ``model`` message (:class:`~protocol.messages.ModelWeights`) carries every parameter of the
network in one vector; this module is the contract for reading it, so a viewer can run the
model on a digit the room draws without depending on the trainer. The network takes a 28x28
image as 784 pixels scaled to [0, 1] (ink 1, paper 0, as MNIST stores them), row by row; each
hidden layer is ``activation(x @ W + b)``; the last is the logits, and the probabilities are
their softmax.
"""

from __future__ import annotations

import itertools

import numpy as np

from protocol.messages import ModelWeights

Layer = tuple[np.ndarray, np.ndarray]


def layers(model: ModelWeights) -> list[Layer]:
    """``(W [fan_in, fan_out], b [fan_out])`` for each layer: views into the message's vector."""
    vector = np.asarray(model.parameters, dtype=np.float32)
    found, offset = [], 0
    for fan_in, fan_out in itertools.pairwise(model.architecture.layer_sizes):
        w = vector[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        b = vector[offset : offset + fan_out]
        offset += fan_out
        found.append((w, b))
    return found


def _activation(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    raise ValueError(f"unknown activation {name!r}")


def probabilities(
    model: ModelWeights, images: np.ndarray, net: list[Layer] | None = None
) -> np.ndarray:
    """Class probabilities ``[n, classes]`` of uint8 images ``[n, 28, 28]`` (or ``[n, 784]``).

    ``net`` is ``layers(model)``, for a caller that runs the same model many times.
    """
    net = layers(model) if net is None else net
    x = np.asarray(images).reshape(len(images), -1).astype(np.float32) / np.float32(255)
    for i, (w, b) in enumerate(net):
        x = x @ w
        x += b
        if i < len(net) - 1:
            x = _activation(model.architecture.activation, x)
    x -= x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x
