"""Augmentation operations, each with its own probability, and the reports' policies as presets.

Operations run on float images in [0, 1] inside ``tf.data`` (host), or as Keras preprocessing
layers inside the model (device, ``data.augment_on: device``; the layers are identities at
inference). Host operations are *stateless*: every random draw comes from a seed the pipeline
derives from (run seed, epoch, example), so an epoch's augmentation is the same whether the run
was interrupted or not, and a resumed run never replays an earlier epoch's draws.

Cropping is special: ``random_resized_crop`` (a random area and aspect, resized) and
``random_crop`` (an output-sized window at native resolution, no resizing; evaluation then takes the
centre window) choose the window that ``decode_and_crop_jpeg`` decodes, so they always run on the
host and save decoding work.

On the host every float pass over an image costs about as much as decoding a 320-px JPEG (memory
traffic), so the colour operations are ``tf.image``'s (the reports' own) without clipping in
between, and one clip at the end. On an accelerator the same policy is nearly free: prefer
``augment_on: device`` there (see docs/performance.md).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf

from common.errors import UserError
from common.registry import Registry
from models.layers import RandomApply


@dataclasses.dataclass(frozen=True)
class AugmentOp:
    """``host(image, seed, **params)`` in tf.data (``seed``: a stateless-RNG seed, shape [2]);
    ``device(**params)`` → a Keras layer, or ``None``."""

    host: Callable
    device: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    probability: float
    params: Tuple[Tuple[str, object], ...] = ()

    @property
    def kwargs(self) -> dict:
        return dict(self.params)


AUGMENTATIONS: Registry[AugmentOp] = Registry("augmentation")
PRESETS: Registry[Tuple[Step, ...]] = Registry("augmentation preset", where="data.augment")
CROP_OPS = ("random_resized_crop", "random_crop")


def augmentation(name: str, device: Optional[Callable] = None):
    """Register the decorated host operation (with its Keras layer factory for the device, if any)."""
    def register(host: Callable) -> Callable:
        AUGMENTATIONS.register(name)(AugmentOp(host, device))
        return host

    return register


def _keras_layer(name: str, **kwargs):
    return getattr(keras.layers, name)(**kwargs)


# Device equivalents. Keras' factors are approximations of the tf.image ranges (documented per op).
def _device_flip(mode):
    return lambda: _keras_layer("RandomFlip", mode=mode)


def _device_rotate(max_degrees: float = 15.0):
    return _keras_layer("RandomRotation", factor=max_degrees / 360.0, fill_mode="reflect")


def _device_brightness(max_delta: float = 0.2):
    return _keras_layer("RandomBrightness", factor=max_delta, value_range=(0, 255))


def _device_contrast(lower: float = 0.8, upper: float = 1.2):
    return _keras_layer("RandomContrast", factor=max(1 - lower, upper - 1), value_range=(0, 255))


def _device_saturation(lower: float = 0.8, upper: float = 1.2):
    return _keras_layer("RandomSaturation", factor=min(1.0, max(1 - lower, upper - 1) / 2), value_range=(0, 255))


def _device_hue(max_delta: float = 0.05):
    return _keras_layer("RandomHue", factor=min(1.0, 2 * max_delta), value_range=(0, 255))


def _device_grayscale():
    return _keras_layer("RandomGrayscale", factor=1.0)


def _device_blur(sigma_min: float = 0.1, sigma_max: float = 2.0):
    return _keras_layer("RandomGaussianBlur", factor=1.0, kernel_size=2 * int(math.ceil(3 * sigma_max)) + 1,
                        sigma=(sigma_min, sigma_max), value_range=(0, 255))


@augmentation("rotate", _device_rotate)
def _rotate(image, seed, max_degrees: float = 15.0):
    """Rotate by a random angle in ±``max_degrees`` (reflecting at the borders, like Keras)."""
    angle = tf.random.stateless_uniform([], seed, -max_degrees, max_degrees) * math.pi / 180.0
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])[None]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return rotated[0]


@augmentation("gaussian_blur", _device_blur)
def _gaussian_blur(image, seed, sigma_min: float = 0.1, sigma_max: float = 2.0):
    """Blur with a random sigma (separable kernel sized for ``sigma_max``)."""
    radius = max(1, int(math.ceil(3 * sigma_max)))
    sigma = tf.random.stateless_uniform([], seed, sigma_min, sigma_max)
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(x ** 2) / (2.0 * sigma ** 2))
    kernel = kernel / tf.reduce_sum(kernel)
    horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                                            mode="REFLECT"), horizontal, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, vertical, [1, 1, 1, 1], "VALID")
    return blurred[0]


@augmentation("flip_left_right", _device_flip("horizontal"))
def _flip_left_right(image, seed):
    return tf.image.flip_left_right(image)  # always: the step's probability decides


@augmentation("flip_up_down", _device_flip("vertical"))
def _flip_up_down(image, seed):
    return tf.image.flip_up_down(image)


@augmentation("grayscale", _device_grayscale)
def _grayscale(image, seed):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


@augmentation("brightness", _device_brightness)
def _brightness(image, seed, max_delta: float = 0.2):
    return tf.image.stateless_random_brightness(image, max_delta, seed)


@augmentation("contrast", _device_contrast)
def _contrast(image, seed, lower: float = 0.8, upper: float = 1.2):
    return tf.image.stateless_random_contrast(image, lower, upper, seed)


@augmentation("saturation", _device_saturation)
def _saturation(image, seed, lower: float = 0.8, upper: float = 1.2):
    return tf.image.stateless_random_saturation(image, lower, upper, seed)


@augmentation("hue", _device_hue)
def _hue(image, seed, max_delta: float = 0.05):
    return tf.image.stateless_random_hue(image, max_delta, seed)


@augmentation("jpeg_quality")  # no Keras layer: host only
def _jpeg_quality(image, seed, min_quality: int = 50, max_quality: int = 95):
    return tf.image.stateless_random_jpeg_quality(image, min_quality, max_quality, seed)


@augmentation("random_resized_crop")
@augmentation("random_crop")
def _decode_time_crop(image, seed, **_):
    """Cropping happens while decoding (see training.data); nothing is left to do here."""
    return image


def step(name, probability=1.0, **params) -> Step:
    return Step(name, float(probability), tuple(sorted(params.items())))


# The reports' policies. Parameters a report does not give are marked "assumed".
PRESETS.register("none")(())
# a light default for new configs
PRESETS.register("basic")((step("random_resized_crop", 1.0, scale=(0.35, 1.0), ratio=(0.75, 1.333)),
                           step("flip_left_right", 0.5)))
# report 000: SimCLR/BYOL-style, each operation with probability 0.5 (strengths assumed)
PRESETS.register("report000")((
    step("random_resized_crop", 0.5, scale=(0.5, 1.0), ratio=(0.75, 1.333)), step("flip_left_right", 0.5),
    step("flip_up_down", 0.5), step("rotate", 0.5, max_degrees=15.0), step("brightness", 0.5, max_delta=0.3),
    step("contrast", 0.5, lower=0.7, upper=1.3), step("saturation", 0.5, lower=0.7, upper=1.3),
    step("grayscale", 0.5), step("gaussian_blur", 0.5, sigma_min=0.1, sigma_max=2.0)))
# report 002 names no transformations ("a set of image transformations"): assumed flip + small rotation
PRESETS.register("report002")((step("flip_left_right", 0.5), step("rotate", 0.5, max_degrees=10.0)))
# report 003, transfer learning: random horizontal flip, rotation, resize to 400 px
PRESETS.register("report003_transfer")((step("flip_left_right", 0.5), step("rotate", 1.0, max_degrees=15.0)))
# report 003, custom CNN: random resized crop (torchvision defaults), flip, rotation, ColorJitter(0.2)
PRESETS.register("report003_cnn")((
    step("random_resized_crop", 1.0, scale=(0.08, 1.0), ratio=(0.75, 1.333)), step("flip_left_right", 0.5),
    step("rotate", 1.0, max_degrees=15.0), step("brightness", 1.0, max_delta=0.2),
    step("contrast", 1.0, lower=0.8, upper=1.2), step("saturation", 1.0, lower=0.8, upper=1.2)))
# report 004's augment(): brightness ±0.6, flip, contrast 0.2–0.6, saturation 5–35, hue ±0.2,
# applied to every image. Its random_crop took 224 px from 224-px images (a no-op): left out.
REPORT004 = (step("brightness", 1.0, max_delta=0.6), step("flip_left_right", 0.5),
             step("contrast", 1.0, lower=0.2, upper=0.6), step("saturation", 1.0, lower=5.0, upper=35.0),
             step("hue", 1.0, max_delta=0.2))
PRESETS.register("report004")(REPORT004)
# report 004's augment() as written, random_crop(224) included: on shards pre-sized with
# --max-side (e.g. 320) it is a crop at native resolution, so the host decodes just that window
# and resizes nothing — with augment_on: device, the fastest pipeline (docs/performance.md)
PRESETS.register("report004_as_written")((step("random_crop", 1.0),) + REPORT004)
# light and fast for pre-sized shards: a native-resolution crop and a horizontal flip
PRESETS.register("crop_flip")((step("random_crop", 1.0), step("flip_left_right", 0.5)))


def crop_step(steps) -> Optional[Step]:
    return next((item for item in steps if item.name in CROP_OPS), None)


def apply_host(image, steps, seed):
    """Apply the non-crop steps to one float image in [0, 1] (tf.data), each with its probability.

    ``seed`` (shape [2]) is split into one seed per step for the operation and one for its coin."""
    seeds = tf.random.experimental.stateless_split(seed, num=2 * max(1, len(steps)))
    for index, item in enumerate(steps):
        if item.name in CROP_OPS:
            continue
        operation, op_seed, coin_seed = AUGMENTATIONS.get(item.name).host, seeds[2 * index], seeds[2 * index + 1]
        if item.probability >= 1.0:
            image = operation(image, op_seed, **item.kwargs)
        elif item.probability > 0:
            image = tf.cond(tf.random.stateless_uniform([], coin_seed) < item.probability,
                            lambda: operation(image, op_seed, **item.kwargs), lambda: image)
    return tf.clip_by_value(image, 0.0, 1.0)


def device_layers(steps):
    """A Keras ``Sequential`` applying the non-crop steps on the accelerator (training only)."""
    layers = []
    for item in steps:
        if item.name in CROP_OPS:
            continue
        factory = AUGMENTATIONS.get(item.name).device
        if factory is None:
            raise UserError(f"data.augment_on: device — {item.name!r} has no Keras layer; use augment_on: host")
        layer = factory(**item.kwargs)
        # RandomFlip flips half the time by itself: double the probability to keep the preset's rate
        probability = min(1.0, 2 * item.probability) if item.name.startswith("flip") else item.probability
        layers.append(layer if probability >= 1.0 else RandomApply(layer, probability))
    return keras.Sequential(layers, name="augmentation") if layers else None
