"""Custom layers used inside models; registered so saved models load without ``custom_objects``.

All of them use ``keras.ops`` only, so they run on any Keras backend.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import keras
from keras import ops

from common.registry import Registry

PACKAGE = "car_recognition"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclasses.dataclass(frozen=True)
class PixelMode:
    """How a backbone expects its pixels: float pixels ``x`` in [0, 255] (RGB) become
    ``x[..., ::-1]`` when ``bgr``, then ``x · scale + offset`` (offset: one number or one per channel).

    Plain numbers, so the same mode is applied by a Keras layer (any backend) and by the tf.data
    pipeline (``data.normalize_in: pipeline``)."""

    description: str
    scale: float = 1.0
    offset: Tuple[float, ...] = (0.0,)
    bgr: bool = False


PIXEL_MODES: Registry[PixelMode] = Registry("pixel mode")
PIXEL_MODES.register("raw")(PixelMode("pixels in [0, 255] (the network normalises them itself, e.g. EfficientNet)"))
PIXEL_MODES.register("caffe")(PixelMode("RGB → BGR and ImageNet channel means subtracted (ResNet50)",
                                        offset=tuple(-mean for mean in CAFFE_BGR_MEAN), bgr=True))
PIXEL_MODES.register("symmetric")(PixelMode("scaled to [-1, 1] (MobileNetV2)", scale=1 / 127.5, offset=(-1.0,)))
PIXEL_MODES.register("unit")(PixelMode("scaled to [0, 1] (the custom CNN)", scale=1 / 255.0))


def normalise_pixels(images, mode: str):
    """Normalise float pixels in [0, 255] the way a backbone expects (see :data:`PIXEL_MODES`)."""
    pixel = PIXEL_MODES.get(mode)
    if pixel.bgr:
        images = ops.flip(images, axis=-1)
    return images * pixel.scale + ops.convert_to_tensor(pixel.offset, dtype=images.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNormalization(keras.layers.Layer):
    """First layer of every model: the backbone's own pixel normalisation, so a model (and anything
    exported from it) takes raw RGB pixels in [0, 255] and no image is normalised twice."""

    def __init__(self, mode: str = "raw", **kwargs):
        super().__init__(**kwargs)
        self.mode = PIXEL_MODES.canonical(mode)

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
