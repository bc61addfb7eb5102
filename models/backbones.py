"""Backbones by name: headless ``keras.Model`` builders with their preprocessing and block layout.

Each registry entry keeps what belongs to the network: the native input size,
how pixels are normalised (:data:`models.layers.PIXEL_MODES`), the file Keras downloads for
ImageNet weights, and a pattern naming the block each layer belongs to (used to unfreeze the last
N blocks). ``keras.applications`` replaces the Keras-2-only ``efficientnet`` package the reports used.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, List, Optional, Tuple

import keras

from common import fs
from common.errors import UserError
from common.registry import Registry

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"
MOBILENET_V2_IMAGENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and what it expects."""

    name: str
    build: Callable[[Tuple[int, int, int], Optional[str], float], keras.Model]
    default_size: int
    pixels: str  # a key of models.layers.PIXEL_MODES
    block_pattern: str  # regex; group 1 names the block a layer belongs to
    weights_file: str = ""  # what Keras downloads for weights="imagenet" (for error messages)
    widths: bool = False  # accepts a width multiplier (MobileNetV2's alpha)


BACKBONES: Registry[BackboneSpec] = Registry("backbone", where="model.backbone")


def _application(class_name: str, **fixed) -> Callable:
    def build(input_shape, weights, width):
        constructor = getattr(keras.applications, class_name)
        extra = dict(fixed)
        if class_name == "MobileNetV2":
            extra["alpha"] = width
        return constructor(include_top=False, weights=weights, input_shape=input_shape, **extra)

    return build


def register(spec: BackboneSpec) -> BackboneSpec:
    """Register a backbone under its own name (the families below are made in loops)."""
    return BACKBONES.register(spec.name)(spec)


EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)
for _index, _size in enumerate(EFFICIENTNET_SIZES):
    register(BackboneSpec(f"efficientnet_b{_index}", _application(f"EfficientNetB{_index}"), _size, "raw",
                           r"^(block\d+[a-z])_", f"efficientnetb{_index}_notop.h5"))
for _variant, _size in (("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300), ("s", 384), ("m", 480), ("l", 480)):
    register(BackboneSpec(f"efficientnetv2_{_variant}", _application(f"EfficientNetV2{_variant.upper()}"), _size,
                           "raw", r"^(block\d+[a-z])_", f"efficientnetv2-{_variant}_notop.h5"))
register(BackboneSpec("resnet50", _application("ResNet50"), 224, "caffe", r"^(conv\d_block\d+)_",
                       "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
register(BackboneSpec("mobilenet_v2", _application("MobileNetV2"), 224, "symmetric",
                       r"^(expanded_conv|block_\d+)_", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
                       "<width>_<size>_no_top.h5", widths=True))


def resolve_weights(weights: str) -> Optional[str]:
    """``imagenet`` → ``"imagenet"``, ``none`` → ``None``, anything else must be a readable file."""
    if weights in (None, "", "none", "None"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not fs.exists(weights):
        raise UserError(f"model.weights: {weights!r} is neither 'imagenet', 'none' nor an existing weights file")
    return weights


def build_backbone(name: str, image_size: int, weights: str = "none", width: float = 1.0) -> keras.Model:
    """A headless backbone for ``image_size``×``image_size`` RGB input, weights loaded as asked."""
    spec = BACKBONES.get(name)
    if width != 1.0 and not spec.widths:
        raise UserError(f"model.width_multiplier: {name} has no width multiplier (received {width})")
    resolved = resolve_weights(weights)
    if resolved == "imagenet" and spec.widths and width not in MOBILENET_V2_IMAGENET_WIDTHS:
        raise UserError(f"model.width_multiplier: ImageNet weights exist for widths "
                        f"{', '.join(map(str, MOBILENET_V2_IMAGENET_WIDTHS))} (received {width})")
    try:
        return spec.build((image_size, image_size, 3), resolved, width)
    except UserError:
        raise
    except Exception as error:
        raise UserError(weights_error(spec, resolved, error)) from None


def weights_error(spec: BackboneSpec, weights: Optional[str], error: Exception) -> str:
    """The message for a failed build: a download that failed, or a weights file that does not fit."""
    text = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    if weights == "imagenet":
        cache = os.path.join(os.path.expanduser("~"), ".keras", "models")
        return (f"could not get the ImageNet weights of {spec.name} ({text}). This machine may be offline. "
                f"Either pass a local weights file (model.weights: /path/to/{spec.weights_file}, the file "
                f"Keras downloads from {KERAS_WEIGHTS_URL}; or copy it into {cache}), or train from "
                "scratch with model.weights: none")
    if weights:
        return f"model.weights: {weights} does not fit {spec.name} ({text})"
    return f"cannot build {spec.name} ({text})"


def block_names(model: keras.Model, spec: BackboneSpec) -> List[str]:
    """For each layer of a backbone, the block it belongs to.

    Layers before the first block belong to ``"stem"``; layers after the last block (a final
    convolution, say) belong to ``"top"``, which is unfrozen together with the last block.
    """
    pattern = re.compile(spec.block_pattern)
    matches = [pattern.match(layer.name) for layer in model.layers]
    last = max((index for index, match in enumerate(matches) if match), default=-1)
    names, current = [], "stem"
    for index, match in enumerate(matches):
        if match:
            current = match.group(1)
        elif index > last:
            current = "top"
        names.append(current)
    return names
