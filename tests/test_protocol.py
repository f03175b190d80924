"""The wire contract: every message round-trips, and every kind of bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from protocol import (
    MESSAGE_TYPES,
    Architecture,
    ControlCommand,
    DatasetInfo,
    Evaluation,
    FirstLayerWeights,
    Hyperparameters,
    HyperparametersTuned,
    ModelWeights,
    ProtocolError,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
    decode,
    decode_control,
    encode,
    encode_control,
    message_json_schema,
)


def examples() -> list:
    common = {"run_id": "run-1", "seq": 0}
    image = np.arange(784, dtype=np.uint8).reshape(28, 28)
    return [
        RunStarted(
            **common,
            dataset=DatasetInfo(
                name="mnist",
                synthetic=False,
                train_size=60000,
                test_size=10000,
                class_names=[str(i) for i in range(10)],
            ),
            architecture=Architecture(layer_sizes=[784, 1000, 10], activation="relu"),
            hyperparameters=Hyperparameters(
                optimizer="sgd", learning_rate=0.1, batch_size=16, epochs=5, seed=0
            ),
            total_steps=100,
        ),
        TrainingMetrics(
            **common,
            step=3,
            epoch=0,
            samples_seen=48,
            loss=2.3,
            batch_accuracy=0.125,
            learning_rate=0.1,
            samples_per_second=900.0,
        ),
        Evaluation(
            **common,
            step=3,
            epoch=0,
            accuracy=0.5,
            loss=1.2,
            examples=4,
            per_class_accuracy=[1.0, 0.0, None],
            confusion=[[2, 0, 0], [2, 0, 0], [0, 0, 0]],
            misclassified_images=np.stack([image, image[::-1]]),
            misclassified_index=[5, 9],
            misclassified_label=[1, 1],
            misclassified_predicted=[0, 0],
        ),
        SamplePrediction(
            **common, step=3, index=7, image=image, label=4, probabilities=[0.05] * 8 + [0.1, 0.5]
        ),
        FirstLayerWeights(
            **common, step=3, epoch=0, units=[0, 1, 2], tiles=np.stack([image] * 3), scale=0.3
        ),
        ModelWeights(
            **common,
            step=3,
            epoch=0,
            architecture=Architecture(layer_sizes=[4, 3, 2], activation="tanh"),
            parameters=np.linspace(-1, 1, 4 * 3 + 3 + 3 * 2 + 2, dtype=np.float32),
        ),
        RunStatus(**common, step=3, state="paused"),
        HyperparametersTuned(
            **common,
            step=40,
            learning_rate=0.01,
            momentum=0.95,
            previous_learning_rate=0.05,
            previous_momentum=0.9,
        ),
        RunFinished(**common, status="completed", step=100, epoch=5, test_accuracy=0.97),
    ]


@pytest.mark.parametrize("message", examples(), ids=lambda m: m.kind)
def test_every_message_round_trips(message) -> None:
    frames = encode(message)
    assert frames[0] == message.kind.encode()
    decoded = decode(frames)
    assert type(decoded) is type(message)
    assert encode(decoded) == frames


def test_every_kind_has_an_example_and_a_schema() -> None:
    assert {m.kind for m in examples()} == set(MESSAGE_TYPES)
    schema = json.dumps(message_json_schema())
    for kind in MESSAGE_TYPES:
        assert f'"{kind}"' in schema


def test_image_travels_as_a_binary_frame_not_json() -> None:
    sample = next(m for m in examples() if m.kind == "sample")
    topic, header, pixels = encode(sample)
    assert len(pixels) == 784
    assert json.loads(header)["image"] == {"frame": 2, "dtype": "uint8", "shape": [28, 28]}
    np.testing.assert_array_equal(decode([topic, header, pixels]).image, sample.image)


def _tamper(message, **changes) -> list[bytes]:
    topic, header, *rest = encode(message)
    payload = json.loads(header)
    payload.update(changes)
    return [topic, json.dumps(payload).encode(), *rest]


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"metrics"], "frames"),
        ([b"nonsense", b"{}"], "unknown_kind"),
        ([b"metrics", b"{not json"], "bad_json"),
        ([b"metrics", b"[1, 2]"], "bad_json"),
        (_tamper(examples()[1], kind="evaluation"), "kind_mismatch"),
        (_tamper(examples()[1], protocol=99), "version"),
        (_tamper(examples()[1], loss="high"), "invalid"),
        (_tamper(examples()[1], seq=-1), "invalid"),
        (_tamper(examples()[1], surprise=1), "invalid"),
        (encode(examples()[3])[:2], "frames"),
        ([*encode(examples()[3]), b"extra"], "frames"),
        ([*encode(examples()[3])[:2], b"short"], "bad_array"),
        (
            _tamper(examples()[3], image={"frame": 2, "dtype": "object", "shape": [28, 28]}),
            "bad_array",
        ),
        (
            _tamper(examples()[3], image={"frame": 2, "dtype": "uint8", "shape": [14, 56]}),
            "invalid",
        ),
        (_tamper(examples()[3], probabilities=[0.5] * 10), "invalid"),
        (_tamper(examples()[2], confusion=[[1, 0], [0, 1]]), "invalid"),
        (_tamper(examples()[2], misclassified_index=[5]), "invalid"),
        (_tamper(examples()[4], units=[0, 1]), "invalid"),
        (
            _tamper(examples()[5], architecture={"layer_sizes": [4, 4, 2], "activation": "tanh"}),
            "invalid",
        ),
        (_tamper(examples()[6], state="dancing"), "invalid"),
    ],
)
def test_bad_input_raises_one_error_type_with_a_reason(frames, reason) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(frames)
    assert caught.value.reason == reason


def test_size_limit_is_checked_before_parsing() -> None:
    frames = encode(examples()[1])
    with pytest.raises(ProtocolError) as caught:
        decode(frames, max_bytes=len(frames[1]))
    assert caught.value.reason == "too_large"


def test_model_parameters_travel_as_float32_and_must_be_finite() -> None:
    model = next(m for m in examples() if m.kind == "model")
    topic, header, data = encode(model)
    assert len(data) == model.parameters.size * 4
    np.testing.assert_array_equal(decode([topic, header, data]).parameters, model.parameters)
    bad = model.parameters.copy()
    bad[3] = np.nan
    with pytest.raises(ProtocolError) as caught:
        decode([topic, header, bad.tobytes()])
    assert caught.value.reason == "invalid"


def test_control_commands_round_trip_and_bad_ones_are_refused() -> None:
    command = ControlCommand(command="pace", steps_per_second=5.0)
    frame = encode_control(command)
    assert frame.startswith(b"{")  # never mistaken for a ZeroMQ (un)subscription
    assert decode_control(frame) == command
    for bad, reason in [
        (b"\x01", "bad_json"),
        (b'{"command": "explode"}', "invalid"),
        (b'{"command": "pace", "steps_per_second": -1}', "invalid"),
        (b"{" + b" " * 5000 + b"}", "too_large"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            decode_control(bad)
        assert caught.value.reason == reason


def test_free_ports_avoid_the_ones_already_chosen() -> None:
    from protocol.endpoints import free_tcp_port, free_tcp_port_pair

    first = free_tcp_port()
    assert free_tcp_port(avoid={first}) != first
    pair = free_tcp_port_pair(avoid={first})
    assert first not in (pair, pair + 1)
    with pytest.raises(OSError, match="no free TCP port"):
        free_tcp_port(avoid=range(1, 65536), attempts=5)
