"""A multilayer perceptron in plain NumPy: forward, backward, loss.

float32 throughout, since that is what the hardware is fast at and what the audience's
network would use anywhere else. Parameters live in one flat list ``[W0, b0, W1, b1, ...]``
(``W`` is ``[in, out]``) so an optimizer is a loop over ``zip(params, grads)``.

The training step (:meth:`MLP.loss_and_gradients`) is written for speed as well as clarity:
every intermediate lives in a buffer allocated once per batch size, matrix products write
straight into them (``np.dot(..., out=)``), and the activation and its derivative work in
place. At the sizes a live demo uses, allocating and touching fresh arrays would cost as much
as the arithmetic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from trainer.blas import Product, add_matmul, add_product

Activation = tuple[
    Callable[[np.ndarray, np.ndarray | None], np.ndarray], Callable[[np.ndarray, np.ndarray], None]
]


# Each activation works in place on ``z`` and may use ``scratch`` (same shape) to do so.
def _relu(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    # (z + |z|) / 2 is max(z, 0) to the bit, in three passes NumPy runs faster than its one
    # NaN-aware np.maximum.
    z += np.abs(z, out=scratch)
    z *= 0.5
    return z


def _tanh(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=z)


def _sigmoid(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


# The derivatives multiply ``delta`` in place by f'(z), computed from the layer's output
# ``out = f(z)``, so the backward pass needs only the outputs the forward pass kept.
def _relu_backward(delta: np.ndarray, out: np.ndarray) -> None:
    np.multiply(delta, out > 0, out=delta)


def _tanh_backward(delta: np.ndarray, out: np.ndarray) -> None:
    delta -= delta * out * out  # delta * (1 - out²)


def _sigmoid_backward(delta: np.ndarray, out: np.ndarray) -> None:
    delta *= out
    delta -= delta * out  # delta * out * (1 - out)


ACTIVATIONS: dict[str, Activation] = {
    "relu": (_relu, _relu_backward),
    "tanh": (_tanh, _tanh_backward),
    "sigmoid": (_sigmoid, _sigmoid_backward),
}


class MLP:
    def __init__(self, layer_sizes: list[int], activation: str, rng: np.random.Generator) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        self.layer_sizes = list(layer_sizes)
        self.activation = activation
        # Every parameter is a view into one vector, so an optimizer can update them all in one
        # pass per operation instead of one per array (the biases are too small to pay for it).
        self.params = _views(np.empty(_parameter_count(layer_sizes), np.float32), layer_sizes)
        for w, b in zip(self.params[0::2], self.params[1::2], strict=True):
            # He initialisation keeps ReLU activations' variance steady; Xavier suits tanh/sigmoid.
            gain = 2.0 if activation == "relu" else 1.0
            w[...] = rng.standard_normal(w.shape) * np.sqrt(gain / len(w))
            b[...] = 0
        self._buffers: dict[tuple[int, np.dtype], _StepBuffers] = {}
        self._grads: dict[np.dtype, list[np.ndarray]] = {}

    @property
    def weights(self) -> list[np.ndarray]:
        return self.params[0::2]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Return every layer's output, input first and logits last (fresh arrays)."""
        act, _ = ACTIVATIONS[self.activation]
        outputs = [x]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.params[0::2], self.params[1::2], strict=True)):
            z = outputs[-1] @ w
            z += b
            outputs.append(z if i == last else act(z, None))
        return outputs

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.forward(x)[-1])

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, *, products: bool = False, x_scale: float = 1.0
    ) -> tuple[float, float, list[np.ndarray]]:
        """Mean cross-entropy, accuracy and the gradient of the loss for every parameter.

        The network's input is ``x_scale * x``. The scale rides on the first layer's two
        matrix products (BLAS's ``alpha``) for free, where scaling ``x`` itself would be a pass
        over the whole batch (:class:`PixelBatches` hands over pixel counts 0-255 this way).

        With ``products`` the weight gradients come back as unevaluated ``inputs.T @ delta``
        (:class:`~trainer.blas.Product`) for an optimizer that fuses them into its update.

        The gradients are this model's own buffers, overwritten by the next call (an optimizer
        may use them as scratch space).
        """
        activation, derivative = ACTIVATIONS[self.activation]
        n = len(y)
        buffers = self._step_buffers(n)
        outputs, grads = buffers.outputs, self._grads[buffers.dtype]
        weights, biases = self.params[0::2], self.params[1::2]
        last = len(weights) - 1

        outputs[0] = x if x.dtype == buffers.dtype else x.astype(buffers.dtype)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = outputs[i + 1]
            np.copyto(z, b)
            add_matmul(z, outputs[i], w, x_scale if i == 0 else 1.0)
            if i < last:
                activation(z, buffers.deltas[i])  # that delta is free until the backward pass

        # Softmax cross-entropy from the logits, shifted by the row maximum (the logit the
        # argmax picked) so nothing overflows; delta = (softmax - onehot) / n is the gradient
        # at the logits. Reductions over a row of ten are slow in NumPy, so row sums are a
        # product with ones and the picked entries are taken by flat index.
        logits, classes = outputs[-1], outputs[-1].shape[1]
        predicted = logits.argmax(axis=1)
        flat_logits = logits.reshape(-1)
        logits -= flat_logits.take(buffers.row_starts + predicted)[:, None]
        targets = buffers.row_starts + y
        delta = np.exp(logits, out=buffers.deltas[last])
        sums = np.dot(delta, buffers.ones[:classes], out=buffers.sums)
        loss = float(np.log(sums).sum() - flat_logits.take(targets).sum()) / n
        accuracy = float(np.count_nonzero(predicted == y)) / n
        delta /= sums[:, None]
        flat_delta = delta.reshape(-1)
        flat_delta[targets] -= 1
        delta *= 1 / n

        if products:
            grads = list(grads)
        for layer in range(last, -1, -1):
            scale = x_scale if layer == 0 else 1.0
            if products:
                grads[2 * layer] = Product(outputs[layer], delta, scale)  # type: ignore[call-overload]
            else:
                add_product(grads[2 * layer], outputs[layer], delta, scale, 0.0)
            np.dot(buffers.ones[:n], delta, out=grads[2 * layer + 1])  # the column sums
            if layer > 0:  # the input needs no gradient
                delta = np.dot(delta, weights[layer].T, out=buffers.deltas[layer - 1])
                derivative(delta, outputs[layer])
        return loss, accuracy, grads

    def _step_buffers(self, batch: int) -> _StepBuffers:
        dtype = self.params[0].dtype  # float32, or float64 when a test checks gradients
        key = (batch, dtype)
        if key not in self._buffers:
            if len(self._buffers) > 4:  # a run uses one or two batch sizes; bound the memory
                self._buffers.clear()
            self._buffers[key] = _StepBuffers(self.layer_sizes, batch, dtype)
        if dtype not in self._grads:
            vector = np.empty(_parameter_count(self.layer_sizes), dtype)
            self._grads[dtype] = _views(vector, self.layer_sizes)
        return self._buffers[key]


class _StepBuffers:
    """Every array one training step writes, for one batch size, allocated once."""

    def __init__(self, layer_sizes: list[int], batch: int, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.row_starts = np.arange(batch) * layer_sizes[-1]
        self.ones = np.ones(max(batch, layer_sizes[-1]), dtype)
        self.sums = np.empty(batch, dtype)
        self.outputs = [np.empty((batch, size), dtype) for size in layer_sizes]
        self.deltas = [np.empty((batch, size), dtype) for size in layer_sizes[1:]]


def _parameter_count(layer_sizes: list[int]) -> int:
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(layer_sizes))


def _views(vector: np.ndarray, layer_sizes: list[int]) -> list[np.ndarray]:
    """``[W0, b0, W1, b1, ...]`` as consecutive views into ``vector``."""
    arrays, offset = [], 0
    for fan_in, fan_out in itertools.pairwise(layer_sizes):
        for shape in ((fan_in, fan_out), (fan_out,)):
            size = int(np.prod(shape))
            arrays.append(vector[offset : offset + size].reshape(shape))
            offset += size
    return arrays


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images ``[n, 28, 28]`` as the float32 rows in [0, 1] the network takes."""
    return images.reshape(len(images), -1 if len(images) else 28 * 28) / np.float32(255)


class PixelBatches:
    """Training images kept as uint8 and handed to the model a batch at a time.

    A float32 copy of the training set is four times the memory (188 MB for Fashion-MNIST's
    60,000) and, gathered a batch at a time, four times the bytes read. A batch comes back as
    float32 pixel counts (0-255), which ``scale`` turns into ``pixels(images)[batch]`` (equal but
    for float32's last bit). The model applies ``scale`` inside its first layer's products
    (``loss_and_gradients(..., x_scale=scale)``), so the conversion is one cast, not a cast
    and a division.
    """

    scale = 1 / 255

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self.rows = images.reshape(len(images), -1)
        self._raw = np.empty((batch_size, self.rows.shape[1]), np.uint8)
        self._counts = np.empty((batch_size, self.rows.shape[1]), np.float32)

    def take(self, batch: np.ndarray) -> np.ndarray:
        raw = np.take(self.rows, batch, axis=0, out=self._raw[: len(batch)])
        counts = self._counts[: len(batch)]
        np.copyto(counts, raw)
        return counts


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
