"""What the reporter tells the room, checked against the model it reports on."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from protocol import Evaluation, FirstLayerWeights, Hyperparameters, ModelWeights
from tests.conftest import SEED, blob_dataset, cross_entropy
from trainer.evaluation import assess
from trainer.loop import build_model, train
from trainer.mlp import pixels
from trainer.optim import SGD
from trainer.reporter import Cadences, Reporter, weight_tiles

HYPERPARAMETERS = Hyperparameters(
    optimizer="sgd", learning_rate=0.1, batch_size=16, epochs=1, seed=0
)


def _half_trained(steps: int = 8):
    """A model part-way through learning the blobs: right on some examples, wrong on others."""
    dataset = blob_dataset(n_train=200, n_test=300)
    model = build_model(replace(SEED, hidden=(32,)), dataset)
    optimizer = SGD(model.params, 0.05)
    x = dataset.train_images.reshape(200, -1) / np.float32(255)
    for start in range(0, steps * 16, 16):
        _, _, grads = model.loss_and_gradients(
            x[start : start + 16], dataset.train_labels[start : start + 16].astype(np.int64)
        )
        optimizer.step(grads)
    return dataset, model


def test_assessment_agrees_with_the_models_own_predictions() -> None:
    dataset, model = _half_trained()
    x = pixels(dataset.test_images)
    y = dataset.test_labels.astype(np.int64)
    result = assess(model, x, y, chunk=64)  # chunks must not change the answer
    predicted = model.predict_proba(x).argmax(axis=1)
    accuracy, loss = (predicted == y).mean(), cross_entropy(model.forward(x)[-1], y)
    assert 0.0 < result.accuracy < 1.0, "the fixture should be half-trained"
    assert result.accuracy == pytest.approx(accuracy)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    confusion = result.confusion()
    assert confusion.sum() == len(y)
    assert np.trace(confusion) == (predicted == y).sum()
    for true_class in range(10):
        row = confusion[true_class]
        assert row.sum() == (y == true_class).sum()
        assert list(row) == [((y == true_class) & (predicted == p)).sum() for p in range(10)]
    mistakes = result.mistakes(5, start=17)
    assert len(mistakes) == 5 and (predicted[mistakes] != y[mistakes]).all()
    assert mistakes[0] >= 17, "the gallery starts where it is told to"


def test_evaluation_message_carries_confusion_and_real_mistakes(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset, model = _half_trained()
    reporter = Reporter(publisher, dataset, eval_examples=250)
    reporter.started(model, HYPERPARAMETERS, total_steps=1)
    reporter.send_evaluation(step=8, epoch=0)
    reporter.finished("completed", 8, 0, None, "")
    sent = [m for m in collector.drain() if isinstance(m, Evaluation)]
    assert len(sent) == 1
    evaluation = sent[0]
    assert evaluation.split == "subset" and evaluation.examples == 250
    confusion = np.array(evaluation.confusion)
    assert np.trace(confusion) / 250 == pytest.approx(evaluation.accuracy)
    for c, accuracy in enumerate(evaluation.per_class_accuracy):
        if confusion[c].sum():
            assert accuracy == pytest.approx(confusion[c, c] / confusion[c].sum())
        else:
            assert accuracy is None
    assert 0 < len(evaluation.misclassified_index) <= 8
    x = pixels(dataset.test_images)
    for i, image, label, predicted in zip(
        evaluation.misclassified_index,
        evaluation.misclassified_images,
        evaluation.misclassified_label,
        evaluation.misclassified_predicted,
        strict=True,
    ):
        assert i < 250
        np.testing.assert_array_equal(image, dataset.test_images[i])
        assert label == dataset.test_labels[i] != predicted
        assert predicted == model.predict_proba(x[i : i + 1]).argmax()


def test_weight_tiles_map_back_to_the_weights() -> None:
    rng = np.random.default_rng(4)
    first_layer = rng.normal(0, 0.05, (784, 100)).astype(np.float32)
    units, tiles, scale = weight_tiles(first_layer, 64)
    assert units == list(range(64)) and tiles.shape == (64, 28, 28)
    restored = (tiles.reshape(64, 784).astype(np.float32) - 127.5) / 127.5 * scale
    inside = np.abs(first_layer[:, :64].T) <= scale
    assert inside.mean() > 0.99
    np.testing.assert_allclose(restored[inside], first_layer[:, :64].T[inside], atol=scale / 127)
    assert (tiles.reshape(64, 784)[~inside] % 255 == 0).all(), "weights beyond the scale saturate"
    assert weight_tiles(first_layer[:, :10], 64)[1].shape == (10, 28, 28)


def test_a_run_publishes_weights_model_and_epoch_evaluations(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset(n_train=160, n_test=60)
    dataset = dataclasses.replace(
        dataset,
        validation_images=dataset.test_images[:30],
        validation_labels=dataset.test_labels[:30],
    )
    config = replace(SEED, hidden=(20,), epochs=2, batch_size=16, learning_rate=0.1)
    cadences = Cadences(metrics=None, sample=None, evaluation=None, weights=0.0, model=None)
    reporter = Reporter(publisher, dataset, cadences=cadences, epoch_evaluation_share=None)
    train(dataset, config, reporter)
    messages = collector.drain()
    kinds = [m.kind for m in messages]
    assert "metrics" not in kinds and "sample" not in kinds, "cadence None turns a kind off"
    splits = [(m.split, m.epoch, m.examples) for m in messages if isinstance(m, Evaluation)]
    assert splits == [
        ("test", 0, 60),
        ("validation", 0, 30),
        ("test", 1, 60),
        ("validation", 1, 30),
    ]
    weights = [m for m in messages if isinstance(m, FirstLayerWeights)]
    assert len(weights) == 20 + 1, "every step at cadence 0, and once more at the finish"
    assert weights[0].tiles.shape == (20, 28, 28)
    model_messages = [m for m in messages if isinstance(m, ModelWeights)]
    assert len(model_messages) == 1 and model_messages[0].step == 20
    assert kinds[-3:] == ["weights", "model", "run_finished"]
    assert model_messages[0].architecture.layer_sizes == [784, 20, 10]


def test_model_message_holds_every_parameter_in_order(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset, model = _half_trained()
    reporter = Reporter(publisher, dataset)
    reporter.started(model, HYPERPARAMETERS, total_steps=1)
    reporter.send_model(step=8, epoch=0)
    reporter.finished("diverged", 8, 0, None, "test")
    messages = collector.drain()
    assert [m.kind for m in messages] == ["run_started", "model", "run_finished"]
    parameters = messages[1].parameters
    offset = 0
    for p in model.params:
        np.testing.assert_array_equal(parameters[offset : offset + p.size], p.ravel())
        offset += p.size
    assert offset == parameters.size


def test_epoch_evaluations_stay_within_their_share_of_the_time(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset(n_train=64, n_test=40)
    config = replace(SEED, hidden=(20,), epochs=4, batch_size=16, learning_rate=0.1)
    cadences = Cadences(metrics=None, sample=None, evaluation=None, weights=None, model=None)
    reporter = Reporter(publisher, dataset, cadences=cadences, epoch_evaluation_share=0.0)
    train(dataset, config, reporter)
    evaluations = [m for m in collector.drain() if isinstance(m, Evaluation)]
    assert [(m.split, m.epoch) for m in evaluations] == [("test", 0)]
    assert reporter.epoch_evaluations_skipped == 3


def test_successive_galleries_walk_through_the_mistakes(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset, model = _half_trained()
    reporter = Reporter(publisher, dataset, eval_examples=250)
    reporter.started(model, HYPERPARAMETERS, total_steps=1)
    for _ in range(3):
        reporter.send_evaluation(step=8, epoch=0)
    reporter.finished("diverged", 8, 0, None, "test")
    galleries = [m.misclassified_index for m in collector.drain() if isinstance(m, Evaluation)]
    wrong = np.flatnonzero(
        model.predict_proba(pixels(dataset.test_images[:250])).argmax(axis=1)
        != dataset.test_labels[:250]
    )
    assert len(wrong) > 3 * 8, "the fixture should have more mistakes than three galleries"
    assert [i for gallery in galleries for i in gallery] == wrong[:24].tolist()
