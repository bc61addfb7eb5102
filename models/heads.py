"""Classification heads on pooled backbone features, one output per head, named like the head.

* ``trunk_mlp`` (alias ``report004``) – a shared dense trunk, then a dense/dropout/L2 stack per
  head (report 004's multi-task EfficientNet head; sizes from its baseline or its Hyperband optimum);
* ``linear`` – dropout then one dense layer per head (report 000's replaced classifier, report
  002's per-attribute fully connected layers).

The layer right before the per-head branches is named ``embedding`` (used for retrieval).
"""
from __future__ import annotations

from typing import Dict

import keras

from common.registry import Registry

HEADS = Registry("head", where="model.head")


def _regularizer(l2: float):
    return keras.regularizers.L2(l2) if l2 else None


def _output(x, head: str, classes: int, activation: str):
    # float32 outputs keep softmax and the losses stable under mixed precision
    return keras.layers.Dense(classes, activation=activation, dtype="float32", name=head)(x)


@HEADS.register("trunk_mlp", "report004")
def trunk_mlp_head(features, heads: Dict[str, int], config) -> Dict[str, object]:
    x = features
    for index, units in enumerate(config.trunk_units, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=_regularizer(config.l2),
                               name=f"trunk_dense{index}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"trunk_dropout{index}")(x)
    x = keras.layers.Identity(name="embedding")(x)
    outputs = {}
    for head, classes in heads.items():
        y = x
        for index, units in enumerate(config.head_units, start=1):
            y = keras.layers.Dense(units, activation="relu", kernel_regularizer=_regularizer(config.l2),
                                   name=f"{head}_dense{index}")(y)
            y = keras.layers.Dropout(config.dropout, name=f"{head}_dropout{index}")(y)
        outputs[head] = _output(y, head, classes, config.output_activation)
    return outputs


@HEADS.register("linear")
def linear_head(features, heads: Dict[str, int], config) -> Dict[str, object]:
    x = keras.layers.Identity(name="embedding")(features)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    return {head: _output(x, head, classes, config.output_activation) for head, classes in heads.items()}


def add_heads(features, heads: Dict[str, int], config) -> Dict[str, object]:
    """Apply the configured head (``config.head``) to pooled ``features``."""
    return HEADS.get(config.head)(features, heads, config)
