"""Per-head accuracy metrics that ignore unknown labels (-1, or all-zero one-hot rows)."""
from __future__ import annotations

import keras
from keras import ops

from models.layers import PACKAGE


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
        if self.k == 1:
            hits = ops.equal(labels, ops.cast(ops.argmax(y_pred, axis=-1), "int32"))
        else:
            hits = ops.in_top_k(labels, ops.cast(y_pred, "float32"), self.k)
        weight = ops.cast(known, "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(ops.reshape(sample_weight, (-1,)) > 0, "float32")
        return super().update_state(ops.cast(hits, "float32"), weight)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def head_metrics(num_classes: int) -> list:
    """Accuracy, plus top-5 accuracy for heads with more than five classes."""
    metrics = [HeadAccuracy(1, name="accuracy")]
    if num_classes > 5:
        metrics.append(HeadAccuracy(5, name="top5"))
    return metrics
