"""Registered Keras losses (they load without ``custom_objects``) and the per-head loss registry.

* :class:`SigmoidFocalCrossEntropy` — exactly ``tfa.losses.SigmoidFocalCrossEntropy``: per example
  the sum over classes of ``-α_t (1 - p_t)^γ log p_t`` on clipped binary cross-entropy, then the
  mean over the batch. (Keras' ``BinaryFocalCrossentropy`` averages over classes instead, which
  would shrink the loss 1,716-fold on CompCars.) ``alpha`` may be a per-class vector.
* :class:`CategoricalFocalCrossentropy` — the softmax focal loss of report 001, per-class α too.
* :class:`SparseCategoricalCrossentropy` — with label smoothing, on integer labels.

Labels of ``-1`` (unknown, e.g. a Stanford class without a body type) contribute nothing. The
focal losses take one-hot targets like tfa, or integer labels with ``sparse_labels=True``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import keras
import numpy as np
from keras import ops

from common.errors import UserError
from common.registry import Registry
from models.layers import PACKAGE


def _targets(y_true, y_pred, sparse: bool):
    """One-hot targets and a 0/1 mask of known rows (integer -1 or an all-zero row is unknown)."""
    classes = ops.shape(y_pred)[-1]
    if sparse:
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        known = ops.cast(labels >= 0, y_pred.dtype)
        return ops.one_hot(ops.maximum(labels, 0), classes, dtype=y_pred.dtype), known
    targets = ops.cast(y_true, y_pred.dtype)
    return targets, ops.cast(ops.sum(targets, axis=-1) > 0, y_pred.dtype)


def tf2_binary_crossentropy(targets, output, from_logits: bool):
    """Element-wise binary cross-entropy exactly as TF 2's ``K.binary_crossentropy`` (used by tfa).

    On probabilities it clips to [ε, 1-ε] *and* adds ε inside both logarithms; Keras 3's
    ``ops.binary_crossentropy`` only clips, which changes tfa's documented values by about 4%.
    """
    if from_logits:
        return ops.binary_crossentropy(targets, output, from_logits=True)
    epsilon = keras.config.epsilon()
    output = ops.clip(output, epsilon, 1.0 - epsilon)
    return -(targets * ops.log(output + epsilon) + (1.0 - targets) * ops.log(1.0 - output + epsilon))


def _alpha_config(alpha):
    return [float(a) for a in np.ravel(alpha)] if np.ndim(alpha) else (None if alpha is None else float(alpha))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SigmoidFocalCrossEntropy(keras.losses.Loss):
    """Focal loss with tfa's exact semantics (see the module docstring)."""

    def __init__(self, from_logits: bool = False, alpha=0.25, gamma: float = 2.0, sparse_labels: bool = False,
                 reduction: str = "sum_over_batch_size", name: str = "sigmoid_focal_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma is not None and gamma < 0:
            raise ValueError("Value of gamma should be greater than or equal to zero")
        self.from_logits, self.alpha, self.gamma, self.sparse_labels = from_logits, alpha, gamma, sparse_labels

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        targets, known = _targets(y_true, y_pred, self.sparse_labels)
        cross_entropy = tf2_binary_crossentropy(targets, y_pred, self.from_logits)
        probability = ops.sigmoid(y_pred) if self.from_logits else y_pred
        p_t = targets * probability + (1 - targets) * (1 - probability)
        factor = 1.0
        if np.ndim(self.alpha) or self.alpha:  # tfa: a scalar alpha of 0 (or None) means "no alpha"
            alpha = ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
            factor = targets * alpha + (1 - targets) * (1 - alpha)
        if self.gamma:
            factor = factor * ops.power(1.0 - p_t, self.gamma)
        return ops.sum(factor * cross_entropy, axis=-1) * known

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "alpha": _alpha_config(self.alpha),
                "gamma": self.gamma, "sparse_labels": self.sparse_labels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalFocalCrossentropy(keras.losses.Loss):
    """Softmax focal loss ``-α_y (1 - p_y)^γ log p_y`` (summed over one-hot targets), α per class."""

    def __init__(self, from_logits: bool = False, alpha=0.25, gamma: float = 2.0, label_smoothing: float = 0.0,
                 sparse_labels: bool = True, reduction: str = "sum_over_batch_size",
                 name: str = "categorical_focal_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.alpha, self.gamma = from_logits, alpha, gamma
        self.label_smoothing, self.sparse_labels = label_smoothing, sparse_labels

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        targets, known = _targets(y_true, y_pred, self.sparse_labels)
        if self.label_smoothing:
            classes = ops.cast(ops.shape(y_pred)[-1], y_pred.dtype)
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / classes
        probability = ops.softmax(y_pred) if self.from_logits else y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
        probability = ops.clip(probability, keras.config.epsilon(), 1 - keras.config.epsilon())
        alpha = ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        weight = alpha * ops.power(1 - probability, self.gamma)
        return ops.sum(-targets * weight * ops.log(probability), axis=-1) * known

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "alpha": _alpha_config(self.alpha),
                "gamma": self.gamma, "label_smoothing": self.label_smoothing, "sparse_labels": self.sparse_labels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, with label smoothing; label -1 contributes nothing."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 reduction: str = "sum_over_batch_size", name: str = "sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        targets, known = _targets(y_true, y_pred, sparse=True)
        if self.label_smoothing:
            classes = ops.cast(ops.shape(y_pred)[-1], y_pred.dtype)
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / classes
        if self.from_logits:
            log_probability = ops.log_softmax(y_pred, axis=-1)
        else:
            log_probability = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon()))
        return -ops.sum(targets * log_probability, axis=-1) * known

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


# ---------------------------------------------------------------------------------------------
# Registry: name → how to make the loss for one head


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """``make(config, class_counts, from_logits)`` builds the loss; ``one_hot``: the pipeline must
    deliver one-hot targets (our own losses take integer labels and need none)."""

    make: Callable
    one_hot: bool = False


LOSSES: Registry[LossSpec] = Registry("loss", where="loss.name")


def loss(name: str, one_hot: bool = False):
    """Register the decorated ``make(config, class_counts, from_logits)`` under ``name``."""
    def register(make: Callable) -> Callable:
        LOSSES.register(name)(LossSpec(make, one_hot))
        return make

    return register


def class_frequency_alpha(class_counts: Sequence[int]) -> list:
    """Per-class α from training counts: inverse frequency scaled so the rarest class gets 1.

    Keeps α in (0, 1] as the sigmoid form needs (``1 - α`` weighs the negatives); report 001
    computed α from class counts to favour rare classes.
    """
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    return list(np.round(counts.min() / counts, 8))


def resolve_alpha(config, class_counts: Optional[Sequence[int]]):
    if config.alpha == "class_frequency":
        if class_counts is None:
            raise UserError("loss.alpha: class_frequency needs the training class counts of the manifest")
        return class_frequency_alpha(class_counts)
    return config.alpha


@loss("sparse_categorical_crossentropy")
def _sparse_categorical_crossentropy(config, counts, logits: bool):
    return SparseCategoricalCrossentropy(logits, config.label_smoothing)


@loss("categorical_crossentropy", one_hot=True)
def _categorical_crossentropy(config, counts, logits: bool):
    return keras.losses.CategoricalCrossentropy(logits, config.label_smoothing)


@loss("categorical_focal")
def _categorical_focal(config, counts, logits: bool):
    return CategoricalFocalCrossentropy(logits, resolve_alpha(config, counts), config.gamma, config.label_smoothing,
                                        sparse_labels=True)


@loss("sigmoid_focal")
def _sigmoid_focal(config, counts, logits: bool):
    return SigmoidFocalCrossEntropy(logits, resolve_alpha(config, counts), config.gamma, sparse_labels=True)


def loss_spec(config, head: str) -> LossSpec:
    """The loss of ``head``: ``loss.per_head.<head>`` when set, else ``loss.name``."""
    if head in config.per_head:
        return LOSSES.get(config.per_head[head], where=f"loss.per_head.{head}")
    return LOSSES.get(config.name)


def build_losses(config, heads: Sequence[str], class_counts: dict, from_logits: bool = False) -> dict:
    """``{head: loss}`` for ``compile``; ``class_counts[head]`` are the training counts per class."""
    return {head: loss_spec(config, head).make(config, class_counts.get(head), from_logits) for head in heads}


def one_hot_heads(config, heads: Sequence[str]) -> frozenset:
    """Heads whose loss needs one-hot targets from the input pipeline."""
    return frozenset(head for head in heads if loss_spec(config, head).one_hot)
