"""Save a run to one ``.npz`` file and pick it up again exactly where it stopped.

The file holds only plain arrays (the parameters, the optimizer's state) and one JSON string
with everything else (the configuration, the step, the dataset's name), so loading it never
unpickles anything. Shuffling is derived from the seed and the epoch number, so the step count
alone says where in the data a resumed run continues. Writes go to a temporary file in the same
directory and are renamed over the target, so a crash mid-save never leaves half a checkpoint.
"""

from __future__ import annotations

import itertools
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from protocol import ControlCommand
from protocol.errors import CommandError
from trainer.files import atomic_file
from trainer.mlp import MLP
from trainer.optim import Optimizer

log = logging.getLogger("trainer")

FORMAT = "mnist-live-checkpoint/1"
MUST_MATCH = ("optimizer", "batch_size", "seed")
"""Settings a resumed run cannot change: the optimizer's state and the data order depend on them."""


class CheckpointError(CommandError):
    """A checkpoint that cannot be read or does not fit the run; one line says which and why."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    params: list[np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    step: int
    epoch: int
    config: dict[str, Any]
    dataset: str
    layer_sizes: list[int]
    activation: str
    train_size: int | None = None
    """Training examples of the dataset it was trained on (None: an older checkpoint)."""
    tuning: dict[str, float | None] | None = None
    """The learning rate and momentum as a presenter left them (None: an older checkpoint)."""

    def restore(self, model: MLP, optimizer: Optimizer, config: dict[str, Any]) -> int:
        """Copy the saved weights and optimizer state into a fresh run; return its step."""
        architecture = f"{'-'.join(map(str, self.layer_sizes))} {self.activation}"
        wanted = f"{'-'.join(map(str, model.layer_sizes))} {model.activation}"
        if architecture != wanted:
            raise CheckpointError(
                f"{self.path} holds a {architecture} model but this run is {wanted}; "
                "drop --hidden/--activation or resume with matching ones"
            )
        for key in MUST_MATCH:
            if self.config.get(key) != config.get(key):
                raise CheckpointError(
                    f"{self.path} was trained with {key} {self.config.get(key)!r}, this run "
                    f"asks for {config.get(key)!r}; a resumed run must keep the same {key}"
                )
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: optimizer state does not fit ({exc})") from None
        for target, saved in zip(model.params, self.params, strict=True):
            target[...] = saved
        return self.step


def save(
    path: Path,
    model: MLP,
    optimizer: Optimizer,
    config: dict[str, Any],
    step: int,
    epoch: int,
    dataset: str,
    train_size: int | None = None,
    tuning: dict[str, float | None] | None = None,
) -> None:
    """Write the run's state to ``path`` atomically (``tuning``: the presenter's changes)."""
    metadata = {
        "format": FORMAT,
        "step": step,
        "epoch": epoch,
        "config": config,
        "dataset": dataset,
        "train_size": train_size,
        "layer_sizes": model.layer_sizes,
        "activation": model.activation,
        "tuning": tuning,
    }
    arrays = {"metadata": np.array(json.dumps(metadata))}
    arrays |= {f"param{i}": p for i, p in enumerate(model.params)}
    arrays |= {f"optimizer_{key}": value for key, value in optimizer.state_dict().items()}
    with atomic_file(path) as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]  # (stubs confuse it with allow_pickle)
    log.info("saved checkpoint %s at step %d", path, step)


def load(path: Path) -> Checkpoint:
    """Read and check a checkpoint written by :func:`save`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
        layer_sizes = [int(s) for s in metadata["layer_sizes"]]
        params = [arrays[f"param{i}"] for i in range(2 * (len(layer_sizes) - 1))]
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layer_sizes)):
            if params[2 * i].shape != (fan_in, fan_out) or params[2 * i + 1].shape != (fan_out,):
                raise ValueError(f"layer {i} weights do not match the sizes {layer_sizes}")
        if any(p.dtype != np.float32 for p in params):
            raise ValueError("parameters are not float32")
        prefix = "optimizer_"
        optimizer_state = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        return Checkpoint(
            path=path,
            params=params,
            optimizer_state=optimizer_state,
            step=int(metadata["step"]),
            epoch=int(metadata["epoch"]),
            config=dict(metadata["config"]),
            dataset=str(metadata["dataset"]),
            layer_sizes=layer_sizes,
            activation=str(metadata["activation"]),
            train_size=None if metadata.get("train_size") is None else int(metadata["train_size"]),
            tuning=_tuning(metadata.get("tuning")),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not an mnist-live checkpoint ({exc})") from None


def _tuning(saved: Any) -> dict[str, float | None] | None:
    """The saved tuning, checked as a presenter's command would be (a file is input too)."""
    if saved is None:
        return None
    try:
        command = ControlCommand(command="set", **saved)
    except (TypeError, ValidationError) as exc:
        raise ValueError(f"tuning {saved!r} is not a learning rate and momentum") from exc
    return {"learning_rate": command.learning_rate, "momentum": command.momentum}
