"""The messages that travel from trainer to broker to viewer.

Every message shares one envelope (protocol version, run id, per-run sequence number, send
time) and carries a ``kind`` that names its model, so a receiver can validate any frame with
one discriminated union. Arrays (images, parameters) are :mod:`protocol.arrays`' types. The
presenter's command, which travels the other way, is :mod:`protocol.control`'s.
"""

from __future__ import annotations

import itertools
import time
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.arrays import IMAGE_SIDE, MAX_TILES, FloatVector, ImageArray, ImageStack

PROTOCOL_VERSION: Final = 2
"""Bumped on any change a receiver of the previous version could misread (version 2 added the
``tuned`` kind)."""
READABLE_VERSIONS: Final = frozenset({1, 2})
"""Versions this program reads: every version-1 message is a valid version-2 message, so a
recording made before the bump replays."""

Activation = Literal["relu", "tanh", "sigmoid"]
MAX_CLASSES = 100
MAX_LAYERS = 16
MAX_TEXT = 1_000
MAX_MISCLASSIFIED = 32
MAX_LEARNING_RATE: Final = 100.0
"""Largest learning rate a message or command may carry: far past any that trains."""


SENT_AT_MAX: Final = 4.0e9
"""Latest send time accepted (2096): a recording's clock is unsigned nanoseconds, and a time
far past now is a forgery or a broken clock, not a message to keep."""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Envelope(BaseModel):
    """Fields every message carries.

    ``seq`` numbers the messages of one run from 0 without gaps, so a receiver can tell what
    it missed; ``run_id`` separates runs that share a broker.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    kind: str = Field(description="the message model; also its ZeroMQ topic")
    protocol: Literal[1, 2] = PROTOCOL_VERSION
    run_id: Name
    seq: int = Field(ge=0, lt=2**53, description="exact in every JSON reader")
    sent_at: float = Field(
        default_factory=time.time, gt=0, lt=SENT_AT_MAX, description="Unix time of sending"
    )
    replayed: bool = False


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Name
    synthetic: bool = Field(description="True for the generated stand-in, never real data")
    train_size: int = Field(ge=0, description="Examples trained on (validation excluded)")
    validation_size: int = Field(default=0, ge=0, description="Held out from the training set")
    test_size: int = Field(ge=0)
    class_names: list[Name] = Field(min_length=2, max_length=MAX_CLASSES)
    source: str = Field(
        default="", max_length=MAX_TEXT, description="Where the data came from (path or URL)"
    )


class Architecture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layer_sizes: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        min_length=2, max_length=MAX_LAYERS, description="e.g. [784, 1000, 10]"
    )
    activation: Activation

    @property
    def label(self) -> str:
        """Like ``784-128-10 relu``, as the terminal and tables show a model."""
        return f"{'-'.join(map(str, self.layer_sizes))} {self.activation}"


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    optimizer: Name
    learning_rate: float = Field(gt=0, description="The base rate; a schedule scales it")
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    seed: int
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, description="momentum / Adam beta1")
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Name = Field(default="constant", description="learning-rate schedule")
    max_steps: int | None = Field(default=None, ge=1)
    steps_per_second: float | None = Field(default=None, gt=0, description="pacing, if any")


def samples_seen(steps: Any, steps_per_epoch: int, batch_size: int, train_size: int) -> Any:
    """Training examples consumed by the first ``steps`` steps (an int or an integer array):
    whole epochs, then full batches of the epoch under way, the last batch of an epoch short.
    What ``metrics.samples_seen`` counts."""
    epochs, into = np.divmod(steps, steps_per_epoch)
    return epochs * train_size + np.minimum(into * batch_size, train_size)


class RunStarted(Envelope):
    kind: Literal["run_started"] = "run_started"
    dataset: DatasetInfo
    architecture: Architecture
    hyperparameters: Hyperparameters
    total_steps: int = Field(ge=0, description="Steps the run will take if it completes")
    steps_per_epoch: int = Field(default=1, ge=1)
    start_step: int = Field(default=0, ge=0, description="Above 0 when resumed from a checkpoint")


class TrainingMetrics(Envelope):
    """Coalesced training progress: the mean over the batches since the previous message."""

    kind: Literal["metrics"] = "metrics"
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    samples_seen: int = Field(ge=0)
    loss: float
    batch_accuracy: float = Field(ge=0.0, le=1.0)
    learning_rate: float = Field(ge=0)
    samples_per_second: float = Field(ge=0)


class Evaluation(Envelope):
    """Accuracy and loss on held-out data, with where the network still goes wrong.

    ``split`` says which data: ``subset`` is a fixed slice of the test set evaluated about
    once a second (cheap enough to watch live), ``test`` the whole test set at an epoch end,
    ``validation`` the held-out part of the training set at an epoch end.
    """

    kind: Literal["evaluation"] = "evaluation"
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    split: Literal["subset", "test", "validation"] = "subset"
    accuracy: float = Field(ge=0.0, le=1.0)
    loss: float
    examples: int = Field(ge=1)
    per_class_accuracy: list[Annotated[float, Field(ge=0.0, le=1.0)] | None] = Field(
        default_factory=list,
        max_length=MAX_CLASSES,
        description="Accuracy per true class; null for a class with no examples",
    )
    confusion: list[list[Annotated[int, Field(ge=0)]]] = Field(
        default_factory=list,
        max_length=MAX_CLASSES,
        description="confusion[true][predicted] counts, square, one row per class",
    )
    misclassified_images: ImageStack = Field(
        default_factory=lambda: np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    )
    misclassified_index: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, max_length=MAX_MISCLASSIFIED, description="test-set positions"
    )
    misclassified_label: list[Annotated[int, Field(ge=0, lt=MAX_CLASSES)]] = Field(
        default_factory=list, max_length=MAX_MISCLASSIFIED
    )
    misclassified_predicted: list[Annotated[int, Field(ge=0, lt=MAX_CLASSES)]] = Field(
        default_factory=list, max_length=MAX_MISCLASSIFIED
    )

    @model_validator(mode="after")
    def _consistent(self) -> Evaluation:
        classes = len(self.confusion)
        if any(len(row) != classes for row in self.confusion):
            raise ValueError("confusion must be square")
        if classes and sum(map(sum, self.confusion)) != self.examples:
            raise ValueError("confusion counts must add up to examples")
        if self.per_class_accuracy and classes and len(self.per_class_accuracy) != classes:
            raise ValueError("per_class_accuracy and confusion disagree on the class count")
        n = len(self.misclassified_images)
        if (
            not n
            == len(self.misclassified_index)
            == len(self.misclassified_label)
            == len(self.misclassified_predicted)
        ):
            raise ValueError("misclassified images, index, label and predicted differ in length")
        if n > MAX_MISCLASSIFIED:
            raise ValueError(f"at most {MAX_MISCLASSIFIED} misclassified examples")
        classes = classes or len(self.per_class_accuracy) or MAX_CLASSES
        wrong = [
            c for c in (*self.misclassified_label, *self.misclassified_predicted) if c >= classes
        ]
        if wrong:
            raise ValueError(f"misclassified class {wrong[0]} is not one of the {classes} classes")
        return self


class SamplePrediction(Envelope):
    """One test image, its true label and what the network currently believes it is."""

    kind: Literal["sample"] = "sample"
    step: int = Field(ge=0)
    index: int = Field(ge=0, description="Position of the image in the test set")
    image: ImageArray
    label: int = Field(ge=0, lt=MAX_CLASSES)
    probabilities: list[Probability] = Field(min_length=2, max_length=MAX_CLASSES)

    @field_validator("probabilities")
    @classmethod
    def _sums_to_one(cls, value: list[float]) -> list[float]:
        if abs(sum(value) - 1.0) > 1e-3:
            raise ValueError(f"probabilities must sum to 1, got {sum(value):.6f}")
        return value

    @model_validator(mode="after")
    def _label_is_a_class(self) -> SamplePrediction:
        if self.label >= len(self.probabilities):
            raise ValueError(
                f"label {self.label} is not one of the {len(self.probabilities)} classes"
            )
        return self

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


class FirstLayerWeights(Envelope):
    """The first layer's weights as images: what each hidden unit looks for in a digit.

    Tile ``i`` shows the 784 input weights of hidden unit ``units[i]`` as a 28x28 image,
    mapped to uint8 symmetrically around zero: ``pixel = 127.5 + 127.5 * w / scale``, so 128 is
    zero and a diverging colour map shows sign. One shared ``scale`` keeps tiles comparable.
    """

    kind: Literal["weights"] = "weights"
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    units: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_TILES)
    tiles: ImageStack
    scale: float = Field(gt=0, description="The |weight| that maps to 0 or 255")

    @model_validator(mode="after")
    def _one_tile_per_unit(self) -> FirstLayerWeights:
        if len(self.units) != len(self.tiles):
            raise ValueError(f"{len(self.units)} units but {len(self.tiles)} tiles")
        return self


class ModelWeights(Envelope):
    """Every parameter of the network, so a browser can run the model itself.

    ``parameters`` concatenates, layer by layer, the weight matrix ``[fan_in, fan_out]`` in
    row-major order and then the bias ``[fan_out]``; ``layer_sizes`` gives the shapes.
    """

    kind: Literal["model"] = "model"
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    architecture: Architecture
    parameters: FloatVector

    @model_validator(mode="after")
    def _sizes_match(self) -> ModelWeights:
        sizes = self.architecture.layer_sizes
        expected = sum(a * b + b for a, b in itertools.pairwise(sizes))
        if self.parameters.size != expected:
            raise ValueError(f"layer sizes {sizes} need {expected} parameters")
        return self


class RunStatus(Envelope):
    """What the trainer is doing now, sent whenever it changes (e.g. on a presenter command)."""

    kind: Literal["status"] = "status"
    step: int = Field(ge=0)
    state: Literal["waiting", "training", "paused"]
    steps_per_second: float | None = Field(default=None, gt=0, description="pace, if limited")
    message: str = Field(default="", max_length=MAX_TEXT)


class HyperparametersTuned(Envelope):
    """The presenter changed the run's hyperparameters mid-run; they apply from step ``step + 1``.

    ``learning_rate`` is the new base rate (a schedule scales it from then on, as it scaled the
    old); ``momentum`` is the new momentum (Adam's beta1), or null for an optimizer without one.
    The ``previous_`` fields hold what they replaced, so one message says what changed.
    """

    kind: Literal["tuned"] = "tuned"
    step: int = Field(ge=0, description="the last step taken with the previous values")
    learning_rate: float = Field(gt=0, le=MAX_LEARNING_RATE)
    momentum: float | None = Field(default=None, ge=0.0, lt=1.0)
    previous_learning_rate: float = Field(gt=0, le=MAX_LEARNING_RATE)
    previous_momentum: float | None = Field(default=None, ge=0.0, lt=1.0)


class RunFinished(Envelope):
    kind: Literal["run_finished"] = "run_finished"
    status: Literal["completed", "stopped", "diverged"]
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    test_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str = Field(default="", max_length=MAX_TEXT)


Message = Annotated[
    RunStarted
    | TrainingMetrics
    | Evaluation
    | SamplePrediction
    | FirstLayerWeights
    | ModelWeights
    | RunStatus
    | HyperparametersTuned
    | RunFinished,
    Field(discriminator="kind"),
]

MESSAGE_TYPES: dict[str, type[Envelope]] = {
    model.model_fields["kind"].default: model
    for model in (
        RunStarted,
        TrainingMetrics,
        Evaluation,
        SamplePrediction,
        FirstLayerWeights,
        ModelWeights,
        RunStatus,
        HyperparametersTuned,
        RunFinished,
    )
}
"""Every message model by its ``kind``, which is also its ZeroMQ topic."""

ARRAY_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(
        name
        for name, field in model.model_fields.items()
        if field.annotation is np.ndarray or "ndarray" in str(field.annotation)
    )
    for kind, model in MESSAGE_TYPES.items()
}
"""Fields that travel as binary frames, by kind."""

STATE_KINDS: Final = frozenset({"sample", "weights", "model"})
"""Kinds where only the latest message matters: a late joiner needs the last one, not all."""
