"""The small CNN trained from scratch in report 003 (its "Experiment 2", 65.5% test accuracy).

Four conv–BatchNorm–ReLU–max-pool blocks (32, 64, 128, 256 filters) with spatial dropout 0.1 after
the first three, global average pooling, then dense 512 – BatchNorm – ReLU – dropout 0.5. The
classification layer (the report's FC2) is the head added by :mod:`models.heads`.
"""
from __future__ import annotations

import keras

from common.errors import UserError
from models.backbones import BackboneSpec, register

FILTERS = (32, 64, 128, 256)
BN_MOMENTUM = 0.9  # PyTorch's default (momentum=0.1 there), as in the report; Keras defaults to 0.99


def build_custom_cnn(input_shape, weights, width) -> keras.Model:
    inputs = keras.Input(input_shape, name="pixels")
    x = inputs
    for index, filters in enumerate(FILTERS, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{index}_bn")(x)
        x = keras.layers.ReLU(name=f"block{index}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
        if index < len(FILTERS):
            x = keras.layers.SpatialDropout2D(0.1, name=f"block{index}_dropout")(x)
    x = keras.layers.GlobalAveragePooling2D(name="top_pool")(x)
    x = keras.layers.Dense(512, use_bias=False, name="top_dense")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="top_bn")(x)
    x = keras.layers.ReLU(name="top_relu")(x)
    x = keras.layers.Dropout(0.5, name="top_dropout")(x)
    model = keras.Model(inputs, x, name="custom_cnn")
    if weights == "imagenet":
        raise UserError("model.weights: the custom CNN has no ImageNet weights; use weights: none or a file")
    if weights:
        model.load_weights(weights)
    return model


register(BackboneSpec("custom_cnn", build_custom_cnn, 224, "unit", r"^(block\d+)_"))
