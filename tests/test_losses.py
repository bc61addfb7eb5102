"""Losses against NumPy implementations of their formulas; metrics; serialisation."""
import numpy as np
import pytest

import keras

from training.losses import (LOSSES, CategoricalFocalCrossentropy, SigmoidFocalCrossEntropy,
                             SparseCategoricalCrossentropy, class_frequency_alpha)
from training.metrics import HeadAccuracy

EPS = 1e-7


def numpy_sigmoid_focal(y, p, alpha=0.25, gamma=2.0, from_logits=False):
    """tfa.losses.sigmoid_focal_crossentropy, written out: sum over classes, then mean over the batch."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if from_logits:
        ce = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        p = 1 / (1 + np.exp(-p))
    else:
        q = np.clip(p, EPS, 1 - EPS)
        ce = -(y * np.log(q + EPS) + (1 - y) * np.log(1 - q + EPS))
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - np.asarray(alpha)) if np.ndim(alpha) or alpha else 1.0
    return np.mean(np.sum(alpha_t * (1 - p_t) ** gamma * ce, axis=-1))


def random_case(rng, batch=16, classes=7):
    logits = rng.normal(size=(batch, classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, classes, batch)
    return logits, probabilities, labels, np.eye(classes)[labels]


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (0.0, 1.5), ("vector", 2.0)])
@pytest.mark.parametrize("from_logits", [False, True])
def test_sigmoid_focal_matches_the_formula(alpha, gamma, from_logits):
    rng = np.random.default_rng(0)
    logits, probabilities, labels, onehot = random_case(rng)
    alpha = rng.uniform(0.1, 0.9, 7) if alpha == "vector" else alpha
    predictions = logits if from_logits else probabilities
    loss = SigmoidFocalCrossEntropy(from_logits=from_logits, alpha=alpha, gamma=gamma)
    expected = numpy_sigmoid_focal(onehot, predictions, alpha, gamma, from_logits)
    assert float(loss(onehot, predictions)) == pytest.approx(expected, rel=1e-5)
    sparse = SigmoidFocalCrossEntropy(from_logits=from_logits, alpha=alpha, gamma=gamma, sparse_labels=True)
    assert float(sparse(labels, predictions)) == pytest.approx(expected, rel=1e-5)


def test_sigmoid_focal_reproduces_tfa_documented_values():
    loss = SigmoidFocalCrossEntropy(reduction="none")  # tfa's docstring example, per example
    values = np.asarray(loss(np.array([[0.97], [0.91], [0.03]]), np.array([[1.0], [1.0], [0.0]])))
    np.testing.assert_allclose(values, [0.00010971, 0.0032975, 0.00030611], rtol=2e-4)


def test_sigmoid_focal_sums_over_classes_where_keras_averages():
    rng = np.random.default_rng(1)
    _, probabilities, _, onehot = random_case(rng, classes=50)
    ours = float(SigmoidFocalCrossEntropy(alpha=0.25, gamma=2.0)(onehot, probabilities))
    theirs = float(keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0)(
        onehot, probabilities))
    assert ours / theirs == pytest.approx(50, rel=0.01)  # 1,716 classes would shrink it 1,716-fold


def test_unknown_labels_contribute_nothing():
    rng = np.random.default_rng(2)
    _, probabilities, labels, onehot = random_case(rng, batch=6)
    masked = labels.copy()
    masked[:2] = -1
    for loss in (SigmoidFocalCrossEntropy(sparse_labels=True), CategoricalFocalCrossentropy(),
                 SparseCategoricalCrossentropy()):
        per_example = np.asarray(loss.call(keras.ops.convert_to_tensor(masked), keras.ops.convert_to_tensor(
            probabilities.astype("float32"))))
        assert np.all(per_example[:2] == 0) and np.all(per_example[2:] > 0)
    zero_rows = onehot.copy()
    zero_rows[:2] = 0
    per_example = np.asarray(SigmoidFocalCrossEntropy(reduction="none")(zero_rows, probabilities))
    assert np.all(per_example[:2] == 0)


def test_categorical_focal_matches_the_formula():
    rng = np.random.default_rng(3)
    _, probabilities, labels, onehot = random_case(rng)
    alpha = rng.uniform(0.1, 1.0, 7)
    q = np.clip(probabilities, EPS, 1 - EPS)
    expected = np.mean(np.sum(-onehot * alpha * (1 - q) ** 2.0 * np.log(q), axis=-1))
    assert float(CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0)(labels, probabilities)) == \
        pytest.approx(expected, rel=1e-5)
    keras_value = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)(onehot, probabilities)
    assert float(CategoricalFocalCrossentropy(alpha=0.25)(labels, probabilities)) == \
        pytest.approx(float(keras_value), rel=1e-5)


def test_sparse_cross_entropy_with_label_smoothing():
    rng = np.random.default_rng(4)
    logits, probabilities, labels, onehot = random_case(rng)
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    assert float(SparseCategoricalCrossentropy()(labels, probabilities)) == pytest.approx(float(plain), rel=1e-5)
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(onehot, logits)
    ours = SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(labels, logits)
    assert float(ours) == pytest.approx(float(smoothed), rel=1e-5)


def test_class_frequency_alpha_favours_rare_classes():
    alpha = class_frequency_alpha([100, 10, 1, 0])
    assert alpha == pytest.approx([0.01, 0.1, 1.0, 1.0])


@pytest.mark.parametrize("loss", [SigmoidFocalCrossEntropy(alpha=[0.2, 0.4, 0.6], gamma=1.5, sparse_labels=True),
                                  CategoricalFocalCrossentropy(alpha=0.3, label_smoothing=0.05),
                                  SparseCategoricalCrossentropy(label_smoothing=0.1)])
def test_losses_serialise(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    labels, predictions = np.array([0, 2]), np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], "float32")
    assert type(restored) is type(loss) and float(restored(labels, predictions)) == pytest.approx(
        float(loss(labels, predictions)))


def test_head_accuracy_ignores_unknown_labels():
    predictions = np.array([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.8, 0.1, 0, 0, 0], [0.3, 0.3, 0.4, 0, 0, 0],
                            [0.5, 0.4, 0.1, 0, 0, 0]], "float32")
    metric = HeadAccuracy()
    metric.update_state(np.array([0, 0, -1, 1]), predictions)
    assert float(metric.result()) == pytest.approx(1 / 3)
    top2 = HeadAccuracy(k=2)
    top2.update_state(np.array([0, 0, -1, 1]), predictions)
    assert float(top2.result()) == pytest.approx(1.0)
    onehot = HeadAccuracy()
    onehot.update_state(np.array([[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0] * 6, [0, 1, 0, 0, 0, 0]], "float32"),
                        predictions)
    assert float(onehot.result()) == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_through_its_registry_entry(name):
    """Built the way training builds it (config, class counts): finite, lower for the right answer,
    unknown labels (-1) contribute nothing; one-hot targets exactly where the entry says so."""
    from training.config import LossConfig

    spec = LOSSES.get(name)
    loss = spec.make(LossConfig(name=name, alpha="class_frequency"), np.array([5, 1, 2]), False)
    good, bad = np.array([[0.8, 0.1, 0.1]], "float32"), np.array([[0.1, 0.1, 0.8]], "float32")

    def value(labels, predictions):
        targets = np.eye(3, dtype="float32")[labels] if spec.one_hot else labels
        return float(loss(targets, predictions))

    assert 0 <= value(np.array([0]), good) < value(np.array([0]), bad)
    if not spec.one_hot:  # integer labels: -1 means unknown
        both = float(loss(np.array([0, -1]), np.concatenate([good, bad])))
        assert both == pytest.approx(value(np.array([0]), good) / 2, rel=1e-5)  # mean over the batch, zero for -1
