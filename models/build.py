"""The full model: raw RGB pixels → [device augmentation] → backbone normalisation → backbone →
pooling → heads; and the fine-tuning stages (frozen, last N blocks, all; BatchNorm frozen on request)."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import keras

from common.errors import UserError
from common.registry import Registry
from models.backbones import BACKBONES, BackboneSpec, block_names, build_backbone
from models.heads import add_heads
from models.layers import PixelNormalization

TRAINABLE: Registry[Callable] = Registry("trainable mode", where="model.trainable")


def build_model(config, heads: Dict[str, int], image_size: int,
                augmentation: Optional[keras.layers.Layer] = None, normalize: bool = True) -> keras.Model:
    """Build the model for ``heads`` (``{name: number of classes}``) at ``image_size`` pixels.

    ``config`` is a :class:`training.config.ModelConfig`-like object. The input is named ``image``
    and takes RGB pixels in [0, 255] — or already normalised pixels with ``normalize=False`` (the
    input pipeline normalised them); outputs are a dict keyed by head name.
    """
    if not heads:
        raise UserError("data.heads: at least one head is needed")
    spec = BACKBONES.get(config.backbone)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = PixelNormalization(spec.pixels if normalize else "raw", name="pixel_normalization")(x)
    backbone = build_backbone(config.backbone, image_size, config.weights, config.width_multiplier)
    backbone = keras.Model(backbone.input, backbone.output, name="backbone")
    features = backbone(x)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(inputs, add_heads(features, heads, config), name=f"{config.backbone}_{config.head}")
    set_trainable(model, config.trainable, config.unfreeze_blocks, config.freeze_batchnorm, spec)
    return model


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer("backbone")


def set_trainable(model: keras.Model, mode: str, unfreeze_blocks: int = 0, freeze_batchnorm: bool = False,
                  spec: Optional[BackboneSpec] = None) -> None:
    """Fine-tuning stage: ``all`` layers, backbone ``frozen`` (heads only), or ``last_blocks``.

    ``last_blocks`` trains the last ``unfreeze_blocks`` blocks of the backbone (and its top
    layers) plus the heads. With ``freeze_batchnorm`` the backbone's BatchNorm layers stay frozen
    (inference mode) whatever the mode, which keeps small-batch fine-tuning stable.
    """
    backbone = backbone_of(model)
    TRAINABLE.get(mode)(backbone, unfreeze_blocks, spec)
    if freeze_batchnorm:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


@TRAINABLE.register("all")
def _all(backbone: keras.Model, unfreeze_blocks: int, spec: Optional[BackboneSpec]) -> None:
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = True


@TRAINABLE.register("frozen")
def _frozen(backbone: keras.Model, unfreeze_blocks: int, spec: Optional[BackboneSpec]) -> None:
    backbone.trainable = False


@TRAINABLE.register("last_blocks")
def _last_blocks(backbone: keras.Model, unfreeze_blocks: int, spec: Optional[BackboneSpec]) -> None:
    if unfreeze_blocks < 1:
        raise UserError(f"model.unfreeze_blocks: expected at least 1 with trainable: last_blocks "
                        f"(received {unfreeze_blocks})")
    backbone.trainable = True
    names = block_names(backbone, spec)
    order = [name for name in dict.fromkeys(names) if name not in ("stem", "top")]
    chosen = set(order[-unfreeze_blocks:]) | {"top"}
    for layer, block in zip(backbone.layers, names):
        layer.trainable = block in chosen
