"""Where the network stands on held-out data: accuracy, loss, and where it still goes wrong.

One forward pass gives everything a viewer shows about an evaluation: the overall figures, the
confusion matrix (rows are true classes, columns predictions), accuracy per class, and which
examples are currently misclassified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.mlp import MLP, log_softmax


@dataclass(frozen=True)
class Assessment:
    accuracy: float
    loss: float
    labels: np.ndarray
    predictions: np.ndarray
    classes: int

    @property
    def examples(self) -> int:
        return len(self.labels)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.loss))

    def confusion(self) -> np.ndarray:
        """``[true, predicted]`` counts."""
        flat = self.labels * self.classes + self.predictions
        counts = np.bincount(flat, minlength=self.classes * self.classes)
        return counts.reshape(self.classes, self.classes)

    def per_class_accuracy(self) -> list[float | None]:
        """Accuracy for each true class, ``None`` for a class with no examples here."""
        confusion = self.confusion()
        totals = confusion.sum(axis=1)
        return [
            float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(self.classes)
        ]

    def mistakes(self, limit: int, start: int = 0) -> np.ndarray:
        """Positions of up to ``limit`` misclassified examples, scanning from ``start`` on.

        Moving ``start`` between evaluations shows the room a changing gallery rather than
        the same first few mistakes every time.
        """
        wrong = np.flatnonzero(self.predictions != self.labels)
        if len(wrong) == 0:
            return wrong
        first = int(np.searchsorted(wrong, start % len(self.labels)))
        return np.roll(wrong, -first)[:limit]


def assess(model: MLP, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> Assessment:
    """Evaluate ``model`` on ``x``/``y`` in chunks (bounded memory for the full test set)."""
    classes = model.layer_sizes[-1]
    predictions = np.empty(len(y), dtype=np.int64)
    loss_sum = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, len(y), chunk):
            log_probs = log_softmax(model.forward(x[start : start + chunk])[-1])
            labels = y[start : start + chunk]
            loss_sum -= float(log_probs[np.arange(len(labels)), labels].sum())
            predictions[start : start + len(labels)] = log_probs.argmax(axis=1)
    correct = int((predictions == y).sum())
    return Assessment(
        accuracy=correct / len(y),
        loss=loss_sum / len(y),
        labels=y.astype(np.int64),
        predictions=predictions,
        classes=classes,
    )
