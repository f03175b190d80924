"""One training configuration: the defaults are what 'mnist-live train' runs, every field an
option, presets as replacements of the defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from tests.conftest import run_cli
from trainer import cli
from trainer.config import DEFAULT, PRESETS, TrainConfig
from trainer.options import OPTIONS, config_from_args


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(words))


def test_every_field_is_an_option_and_every_option_a_field() -> None:
    assert set(OPTIONS) == {field.name for field in dataclasses.fields(TrainConfig)}
    flags = [option.flag for option in OPTIONS.values()]
    assert len(set(flags)) == len(flags)


def test_no_options_train_the_defaults_and_a_preset_replaces_them() -> None:
    assert config_from_args(parse()) == DEFAULT == TrainConfig()
    assert config_from_args(parse("--preset", "seed")) == PRESETS["seed"]
    seed = config_from_args(parse("--preset", "seed", "--lr", "0.02", "--hidden", "64,32"))
    assert seed == dataclasses.replace(PRESETS["seed"], learning_rate=0.02, hidden=(64, 32))
    assert PRESETS["seed"].optimizer == "sgd" and PRESETS["seed"].hidden == (1000,)


def test_resuming_keeps_the_checkpoints_recipe_but_not_its_pace() -> None:
    saved = dataclasses.replace(DEFAULT, seed=5, max_steps=10, steps_per_second=2.0).to_dict()
    resumed = config_from_args(parse("--epochs", "3"), saved)
    assert (resumed.seed, resumed.epochs) == (5, 3)
    assert resumed.max_steps is None and resumed.steps_per_second is None
    with_preset = config_from_args(parse("--preset", "seed"), saved)
    assert (with_preset.hidden, with_preset.seed) == ((1000,), 5)


@pytest.mark.parametrize(("flag", "value"), [("--lr", "0.05"), ("--batch-size", "32")])
def test_help_shows_the_dataclass_defaults(flag: str, value: str) -> None:
    done = run_cli("train", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    options = text.split(" options: ", 1)[1]  # past the usage line
    option = re.search(rf"{flag} [A-Z_,\[\]]+ (.*?) --[a-z]", options)  # up to the next option
    assert option is not None and f"(default: {value})" in option.group(1), text
    assert f"Without options it trains the default recipe: {DEFAULT.describe()}" in text
