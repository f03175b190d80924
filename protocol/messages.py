"""The messages that travel from trainer to broker to viewer.

Every message shares one envelope (protocol version, run id, per-run sequence number, send
time) and carries a ``kind`` that names its model, so a receiver can validate any frame with
one discriminated union. Arrays (images) are NumPy arrays in Python and travel as raw binary
frames on the wire (see :mod:`protocol.codec`), because pixels as JSON number lists cost an
order of magnitude more to encode and decode.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)

PROTOCOL_VERSION: Final = 1
"""Bumped on any change a receiver of the previous version could misread."""

IMAGE_SIDE = 28
Activation = Literal["relu", "tanh", "sigmoid"]
MAX_CLASSES = 100
MAX_LAYERS = 16
MAX_TEXT = 1_000


def _image_array(value: Any) -> np.ndarray:
    """Accept a 28x28 uint8 image given as an array or nested lists; refuse anything else."""
    array = np.asarray(value)
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"image must be {IMAGE_SIDE}x{IMAGE_SIDE}, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise ValueError(f"image must hold uint8 pixels 0..255, got dtype {array.dtype}")
        array = array.astype(np.uint8)
    return array


ImageArray = Annotated[
    np.ndarray,
    PlainValidator(_image_array),
    PlainSerializer(lambda a: a.tolist(), when_used="json"),
    WithJsonSchema(
        {
            "description": (
                "A 28x28 uint8 image. On the wire: an array reference "
                '{"frame": N, "dtype": "uint8", "shape": [28, 28]} pointing at binary frame N.'
            ),
            "type": "object",
            "properties": {
                "frame": {"type": "integer", "minimum": 2},
                "dtype": {"const": "uint8"},
                "shape": {"const": [IMAGE_SIDE, IMAGE_SIDE]},
            },
            "required": ["frame", "dtype", "shape"],
        }
    ),
]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Envelope(BaseModel):
    """Fields every message carries.

    ``seq`` numbers the messages of one run from 0 without gaps, so a receiver can tell what
    it missed; ``run_id`` separates runs that share a broker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    kind: str = Field(description="the message model; also its ZeroMQ topic")
    protocol: Literal[1] = PROTOCOL_VERSION
    run_id: Name
    seq: int = Field(ge=0)
    sent_at: float = Field(default_factory=time.time, description="Unix time of sending")
    replayed: bool = False


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    synthetic: bool = Field(description="True for the generated stand-in, never real data")
    train_size: int = Field(ge=0)
    test_size: int = Field(ge=0)
    class_names: list[Name] = Field(min_length=2, max_length=MAX_CLASSES)


class Architecture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layer_sizes: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        min_length=2, max_length=MAX_LAYERS, description="e.g. [784, 1000, 10]"
    )
    activation: Activation


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Name
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    seed: int


class RunStarted(Envelope):
    kind: Literal["run_started"] = "run_started"
    dataset: DatasetInfo
    architecture: Architecture
    hyperparameters: Hyperparameters
    total_steps: int = Field(ge=0, description="Steps the run will take if it completes")


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
    """Accuracy and loss on a fixed evaluation subset of the test set."""

    kind: Literal["evaluation"] = "evaluation"
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    accuracy: float = Field(ge=0.0, le=1.0)
    loss: float
    examples: int = Field(ge=1)


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

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


class RunFinished(Envelope):
    kind: Literal["run_finished"] = "run_finished"
    status: Literal["completed", "stopped", "diverged"]
    step: int = Field(ge=0)
    epoch: int = Field(ge=0)
    test_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str = Field(default="", max_length=MAX_TEXT)


Message = Annotated[
    RunStarted | TrainingMetrics | Evaluation | SamplePrediction | RunFinished,
    Field(discriminator="kind"),
]

MESSAGE_TYPES: dict[str, type[Envelope]] = {
    model.model_fields["kind"].default: model
    for model in (RunStarted, TrainingMetrics, Evaluation, SamplePrediction, RunFinished)
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
