"""The region of a stored image that becomes one example: the box (+ margin) or the whole picture,
the crop step's window, and decoding just that window at the coarsest sufficient DCT scale.

Windows are ``(y, x, height, width)`` in full-resolution pixels; every random draw is stateless
(its seed comes from the pipeline).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from common.registry import Registry
from data_prep import schema
from training.augment import Step

DCT_RATIOS = (8, 4, 2, 1)


def base_window(parsed, shape, crop_to_bbox: bool, margin: float):
    """(y, x, height, width) in pixels of the region to use: the bbox (+margin) or the whole image."""
    if not crop_to_bbox:
        return tf.stack([0, 0, shape[0], shape[1]])
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(parsed[schema.BBOX])
    grow_y, grow_x = margin * (ymax - ymin), margin * (xmax - xmin)
    top = tf.minimum(tf.cast(tf.floor(tf.maximum(0.0, ymin - grow_y) * height), tf.int32), shape[0] - 1)
    left = tf.minimum(tf.cast(tf.floor(tf.maximum(0.0, xmin - grow_x) * width), tf.int32), shape[1] - 1)
    bottom = tf.minimum(tf.cast(tf.math.ceil(tf.minimum(1.0, ymax + grow_y) * height), tf.int32), shape[0])
    right = tf.minimum(tf.cast(tf.math.ceil(tf.minimum(1.0, xmax + grow_x) * width), tf.int32), shape[1])
    return tf.stack([top, left, tf.maximum(1, bottom - top), tf.maximum(1, right - left)])


def native_window(window, size: int, seed=None):
    """A ``size``×``size`` window inside ``window`` (random with ``seed``, else centred) when it fits,
    else ``window``. At native resolution nothing needs resizing afterwards: the cheapest crop for
    pre-sized shards.
    """
    fits = tf.logical_and(window[2] >= size, window[3] >= size)
    if seed is not None:
        offsets = tf.random.stateless_uniform([2], seed, 0, 2 ** 30, dtype=tf.int32)
        dy = offsets[0] % (tf.maximum(window[2] - size, 0) + 1)
        dx = offsets[1] % (tf.maximum(window[3] - size, 0) + 1)
    else:
        dy, dx = tf.maximum(window[2] - size, 0) // 2, tf.maximum(window[3] - size, 0) // 2
    crop = tf.stack([window[0] + dy, window[1] + dx, size, size])
    return tf.where(fits, crop, window)


def distorted_window(window, step: Step, size: int, seed):
    """A random area fraction (``scale``) and aspect (``ratio``) of ``window`` (resized later)."""
    params = step.kwargs
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([window[2], window[3], 3]), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed, min_object_covered=0.0, aspect_ratio_range=params.get("ratio", (0.75, 1.333)),
        area_range=params.get("scale", (0.08, 1.0)), max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.stack([window[0] + begin[0], window[1] + begin[1], extent[0], extent[1]])


@dataclasses.dataclass(frozen=True)
class Crop:
    """A crop step: how training picks its window; ``native``: the window has the output size at
    native resolution (decoded as is, nothing resized; evaluation takes the centre window)."""

    window: Callable  # (window, step, output size, seed) → window
    native: bool


CROPS: Registry[Crop] = Registry("crop")
CROPS.register("random_crop")(Crop(lambda window, step, size, seed: native_window(window, size, seed), native=True))
CROPS.register("random_resized_crop")(Crop(distorted_window, native=False))


def random_window(window, step: Step, size: int, seed):
    """The crop step's window, applied with the step's probability."""
    crop_seed, coin_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    crop = CROPS.get(step.name).window(window, step, size, crop_seed)
    if step.probability >= 1.0:
        return crop
    return tf.cond(tf.random.stateless_uniform([], coin_seed) < step.probability, lambda: crop, lambda: window)


def decode_window(encoded, window, target: int):
    """Decode only ``window`` at the coarsest DCT scale (1/8, 1/4, 1/2, 1) that keeps ≥ ``target`` px.

    The window is given in full-resolution pixels; ``decode_and_crop_jpeg`` takes it in scaled ones.
    """
    smaller = tf.minimum(window[2], window[3])

    def decoder(ratio):
        def decode():
            scaled = tf.stack([window[0] // ratio, window[1] // ratio,
                               tf.maximum(1, window[2] // ratio), tf.maximum(1, window[3] // ratio)])
            return tf.io.decode_and_crop_jpeg(encoded, scaled, channels=3, ratio=ratio)
        return decode

    choice = tf.argmax(tf.stack([smaller // ratio >= target for ratio in DCT_RATIOS] + [True]), output_type=tf.int32)
    choice = tf.minimum(choice, len(DCT_RATIOS) - 1)
    return tf.switch_case(choice, [decoder(ratio) for ratio in DCT_RATIOS])


def stored_shape(parsed):
    """Height and width from the record (written and verified by data_prep: no JPEG header re-parse)."""
    return tf.cast(tf.stack([parsed[schema.HEIGHT], parsed[schema.WIDTH]]), tf.int32)


def decode(encoded, window, crop: Optional[Step], size: int):
    """A native-resolution crop is decoded as is; anything else at the best DCT scale."""
    if crop is not None and CROPS.get(crop.name).native and crop.probability >= 1.0:
        fits = tf.logical_and(tf.equal(window[2], size), tf.equal(window[3], size))
        return tf.cond(fits, lambda: tf.io.decode_and_crop_jpeg(encoded, window, channels=3),
                       lambda: decode_window(encoded, window, size))
    return decode_window(encoded, window, size)
