"""Per-head accuracy metrics that ignore unknown labels (-1, or all-zero one-hot rows).

Top-k: :func:`top_k_hits` is the one rule (``eval.metrics.top_k_accuracy`` uses it too): the true
class's rank is the number of classes scoring higher plus the tied classes with a lower id (ties go
to the lower id, as argmax does), and it is a hit when that rank is below k. ``in_top_k`` counts every tie as a hit: with
saturated outputs (one 1.0, the rest exactly 0) every label would be "in the top 5".
"""
from __future__ import annotations

from typing import Dict

import keras
from keras import ops

from common.errors import UserError, describe_choices
from models.layers import PACKAGE
from training.config import PlateauSchedule


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadAccuracy(keras.metrics.Mean):
    """Top-``k`` accuracy over examples with a known label; integer or one-hot targets."""

    def __init__(self, k: int = 1, name: str = "accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.k = int(k)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] and y_pred.shape[-1] != 1:
            known = ops.sum(y_true, axis=-1) > 0
            labels = ops.argmax(y_true, axis=-1)
        else:
            labels = ops.reshape(y_true, (-1,))
            known = labels >= 0
        labels = ops.cast(ops.maximum(labels, 0), "int32")
        hits = top_k_hits(labels, ops.cast(y_pred, "float32"), self.k)
        weight = ops.cast(known, "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(ops.reshape(sample_weight, (-1,)) > 0, "float32")
        return super().update_state(ops.cast(hits, "float32"), weight)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def top_k_hits(labels, scores, k: int):
    """Whether each label is among the top ``k`` scores, ties broken by class id; a score that is not a
    number is never a hit."""
    true = ops.take_along_axis(scores, ops.expand_dims(labels, -1), axis=-1)
    higher = ops.sum(ops.cast(scores > true, "int32"), axis=-1)
    earlier = ops.expand_dims(ops.arange(ops.shape(scores)[-1], dtype="int32"), 0) < ops.expand_dims(labels, -1)
    earlier_ties = ops.sum(ops.cast(ops.logical_and(scores == true, earlier), "int32"), axis=-1)
    return ops.logical_and(higher + earlier_ties < k, ops.isfinite(true[..., 0]))


def head_metrics(num_classes: int) -> list:
    """Accuracy, plus top-5 accuracy for heads with more than five classes."""
    metrics = [HeadAccuracy(1, name="accuracy")]
    if num_classes > 5:
        metrics.append(HeadAccuracy(5, name="top5"))
    return metrics


def reported_metrics(heads: Dict[str, int], has_validation: bool) -> list:
    """The names training logs: loss and per-head loss/accuracy/top-5, with ``val_`` variants."""
    names = ["loss"]
    for head, classes in heads.items():
        names += [f"{head}_loss", f"{head}_accuracy"] + ([f"{head}_top5"] if classes > 5 else [])
    return names + ([f"val_{name}" for name in names] if has_validation else [])


def check_monitors(config, heads: Dict[str, int], has_validation: bool) -> None:
    """Every metric a callback watches must be one training reports (checked before the first step:
    a misspelt monitor would otherwise train to the end and keep an arbitrary model as "best")."""
    names = reported_metrics(heads, has_validation)
    watched = [("training.monitor", config.training.monitor)]
    if config.training.early_stopping_patience:
        watched.append(("training.early_stopping_monitor", config.training.early_stopping_monitor))
    if isinstance(config.schedule, PlateauSchedule):
        watched.append(("schedule.monitor", config.schedule.monitor))
    for key, monitor in watched:
        if monitor not in names:
            hint = "" if has_validation or not monitor.startswith("val_") else " (the data has no validation split)"
            raise UserError(f"{key}: " + describe_choices("metric", monitor, names) + hint)
