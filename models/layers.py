"""Custom layers used inside models; registered so saved models load without ``custom_objects``.

All of them use ``keras.ops`` only, so they run on any Keras backend.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "car_recognition"

# name → (description, function of float pixels in [0, 255])
PIXEL_MODES = {
    "raw": "pixels in [0, 255] (the network normalises them itself, e.g. EfficientNet)",
    "caffe": "RGB → BGR and ImageNet channel means subtracted (ResNet50)",
    "symmetric": "scaled to [-1, 1] (MobileNetV2)",
    "unit": "scaled to [0, 1] (the custom CNN)",
}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def normalise_pixels(images, mode: str):
    """Normalise float pixels in [0, 255] the way a backbone expects (see :data:`PIXEL_MODES`)."""
    if mode == "raw":
        return images
    if mode == "caffe":
        return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=images.dtype)
    if mode == "symmetric":
        return images / 127.5 - 1.0
    if mode == "unit":
        return images / 255.0
    raise ValueError(f"unknown pixel mode {mode!r}; choose one of: {', '.join(PIXEL_MODES)}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNormalization(keras.layers.Layer):
    """First layer of every model: the backbone's own pixel normalisation, so a model (and anything
    exported from it) takes raw RGB pixels in [0, 255] and no image is normalised twice."""

    def __init__(self, mode: str = "raw", **kwargs):
        super().__init__(**kwargs)
        if mode not in PIXEL_MODES:
            raise ValueError(f"unknown pixel mode {mode!r}; choose one of: {', '.join(PIXEL_MODES)}")
        self.mode = mode

    def call(self, images):
        return normalise_pixels(ops.cast(images, self.compute_dtype), self.mode)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomApply(keras.layers.Layer):
    """Apply ``layer`` to each image of a batch with probability ``probability`` (training only).

    Keras' preprocessing layers transform every image; the reports' policies give each operation
    its own probability, so the transformed and original images are mixed per example.
    """

    def __init__(self, layer, probability: float = 0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer if isinstance(layer, keras.layers.Layer) else keras.saving.deserialize_keras_object(layer)
        self.probability = float(probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.layer.build(input_shape)
        super().build(input_shape)

    def call(self, images, training=None):
        if not training:
            return images
        transformed = self.layer(images, training=True)
        batch = ops.shape(images)[0]
        draws = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
        return ops.where(draws < self.probability, ops.cast(transformed, images.dtype), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer),
                "probability": self.probability, "seed": self.seed}
