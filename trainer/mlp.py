"""A multilayer perceptron in plain NumPy: forward, backward, and the update rule.

float32 throughout, since that is what the hardware is fast at and what the audience's
network would use anywhere else. Parameters live in one flat list ``[W0, b0, W1, b1, ...]``
so an optimizer is a loop over ``zip(params, grads)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

Activation = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0, out=z)


def _tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z, out=z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


# Each activation works in place on the pre-activation and gives its derivative from its own
# output, so the backward pass needs only the layer outputs the forward pass kept.
ACTIVATIONS: dict[str, Activation] = {
    "relu": (_relu, lambda out: (out > 0).astype(np.float32)),
    "tanh": (_tanh, lambda out: 1 - out * out),
    "sigmoid": (_sigmoid, lambda out: out * (1 - out)),
}


class MLP:
    def __init__(self, layer_sizes: list[int], activation: str, rng: np.random.Generator) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        self.layer_sizes = list(layer_sizes)
        self.activation = activation
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in itertools.pairwise(layer_sizes):
            # He initialisation keeps ReLU activations' variance steady; Xavier suits tanh/sigmoid.
            gain = 2.0 if activation == "relu" else 1.0
            scale = np.sqrt(gain / fan_in)
            self.params.append((rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32))
            self.params.append(np.zeros(fan_out, dtype=np.float32))

    @property
    def weights(self) -> list[np.ndarray]:
        return self.params[0::2]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Return every layer's output, input first and logits last."""
        act, _ = ACTIVATIONS[self.activation]
        outputs = [x]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.params[0::2], self.params[1::2], strict=True)):
            z = outputs[-1] @ w
            z += b
            outputs.append(z if i == last else act(z))
        return outputs

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.forward(x)[-1])

    def evaluate(self, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> tuple[float, float]:
        """Accuracy and mean cross-entropy over ``x``, in chunks to bound memory."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), chunk):
            log_probs = log_softmax(self.forward(x[start : start + chunk])[-1])
            labels = y[start : start + chunk]
            loss_sum -= float(log_probs[np.arange(len(labels)), labels].sum())
            correct += int((log_probs.argmax(axis=1) == labels).sum())
        return correct / len(y), loss_sum / len(y)

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[float, float, list[np.ndarray]]:
        """Mean cross-entropy, accuracy and the gradient of the loss for every parameter."""
        _, derivative = ACTIVATIONS[self.activation]
        outputs = self.forward(x)
        log_probs = log_softmax(outputs[-1])
        n = len(y)
        rows = np.arange(n)
        loss = float(-log_probs[rows, y].mean())
        accuracy = float((log_probs.argmax(axis=1) == y).mean())

        delta = np.exp(log_probs, out=log_probs)
        delta[rows, y] -= 1
        delta /= n
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        for layer in reversed(range(len(self.weights))):
            grads[2 * layer] = outputs[layer].T @ delta
            grads[2 * layer + 1] = delta.sum(axis=0)
            if layer > 0:
                delta = delta @ self.params[2 * layer].T
                delta *= derivative(outputs[layer])
        return loss, accuracy, grads


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities via log-sum-exp: finite for any finite logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of integer labels ``y`` under ``logits``."""
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())


class SGD:
    """Plain stochastic gradient descent: the 2018 demo's optimizer."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params = params
        self.lr = lr

    def step(self, grads: list[np.ndarray]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p -= self.lr * g
