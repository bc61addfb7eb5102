"""From a configuration to the pieces ``fit`` composes: data, heads, pipeline specs, model, compile.

Kept apart from the training loop so tuning and evaluation reuse exactly the same functions.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, Optional, Tuple

import numpy as np

from common import fs
from common.errors import UserError
from data_prep.manifest import MANIFEST, load_manifest
from models.backbones import get_backbone
from models.build import build_model, set_trainable
from training import augment
from training.data import PipelineSpec, class_weights_from_counts, eval_dataset, split_files, train_dataset
from training.losses import build_losses, one_hot_heads
from training.metrics import head_metrics
from training.optim import build_optimizer

LOG = logging.getLogger("training.setup")


def ensure_dataset(data) -> str:
    """The folder with ``manifest.json``; created from ``data.prepare`` when absent (the demo)."""
    if fs.exists(fs.join(data.shards, MANIFEST)):
        return data.shards
    if data.prepare is None:
        raise UserError(f"data.shards: no manifest.json in {data.shards!r}. Build the shards first, e.g. "
                        "python -m data_prep.build --dataset stanford_cars --root DATA --out "
                        f"{data.shards} (see the README)")
    from data_prep.build import build_dataset
    from data_prep.options import BuildOptions
    from data_prep.synthetic import GROUND_TRUTH, generate

    prepare = data.prepare
    raw = os.path.join(os.path.dirname(os.path.normpath(data.shards)) or ".", "raw")
    print(f"dataset not found in {data.shards}: creating it (data.prepare)")
    if not fs.exists(fs.join(raw, GROUND_TRUTH)):
        truth = generate(prepare.synthetic_layout, raw, makes=prepare.makes, models_per_make=prepare.models_per_make,
                         images_per_model=prepare.images_per_model, seed=prepare.seed)
        print(f"  synthetic {prepare.synthetic_layout} dataset: {truth['images']} images, "
              f"{len(truth['classes'])} classes → {raw}")
    build_dataset(BuildOptions(dataset=prepare.synthetic_layout, root=raw, out=data.shards, split=prepare.split,
                               max_side=prepare.max_side, progress=False, accept_rejects=True, overwrite=True))
    return data.shards


def select_heads(manifest: dict, wanted) -> Dict[str, int]:
    """``{head: classes}`` for the configured heads (all of the manifest's when none are listed)."""
    available = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
    unknown = [head for head in wanted if head not in available]
    if unknown:
        raise UserError(f"data.heads: {', '.join(unknown)} not in the manifest; it has {', '.join(available)}")
    return {head: available[head] for head in (wanted or available)}


def train_counts(manifest: dict, split: str, head: str) -> np.ndarray:
    return np.asarray(manifest["splits"][split]["class_counts"][head]["per_class"])


def split_size(manifest: dict, split: str) -> int:
    return int(manifest["splits"].get(split, {}).get("examples", 0))


def pipeline_spec(config, manifest: dict, heads: Dict[str, int], image_size: int) -> PipelineSpec:
    data = config.data
    steps = augment.get_preset(data.augment)
    weights = resample_head = resample_counts = None
    if data.class_balance != "none" and data.balance_head not in heads:
        raise UserError(f"data.balance_head: {data.balance_head!r} is not one of the heads ({', '.join(heads)})")
    if data.class_balance == "weights":
        weights = {data.balance_head: class_weights_from_counts(train_counts(manifest, data.train_split,
                                                                             data.balance_head))}
    elif data.class_balance == "resample":
        resample_head = data.balance_head
        resample_counts = train_counts(manifest, data.train_split, data.balance_head)
    pixels = get_backbone(config.model.backbone).pixels if data.normalize_in == "pipeline" else None
    return PipelineSpec(
        heads=tuple(heads), num_classes=dict(heads), image_size=image_size,
        one_hot_heads=one_hot_heads(config.loss, heads), crop_to_bbox=data.crop_to_bbox,
        bbox_margin=data.bbox_margin, augment=steps if data.augment_on == "host" else (),
        crop=augment.crop_step(steps), pixels=pixels,
        class_weights=weights, resample_head=resample_head, resample_counts=resample_counts)


def datasets(config, manifest_dir: str, manifest: dict, spec: PipelineSpec, global_batch: int, pad: bool,
             steps_per_epoch: int, first_epoch: int = 0):
    """(training, validation or None) datasets; training starts at ``first_epoch`` (a resumed run draws
    that epoch's order and augmentation, not the first epoch's again); ``pad`` fills the last
    validation batch (several replicas, TPU)."""
    data = config.data
    if split_size(manifest, data.train_split) == 0:
        raise UserError(f"data.train_split: the manifest has no {data.train_split!r} examples "
                        f"(splits: {', '.join(manifest['splits'])})")
    train = train_dataset(split_files(manifest_dir, manifest, data.train_split), spec, global_batch,
                          config.training.seed, examples_per_epoch=steps_per_epoch * global_batch,
                          first_epoch=first_epoch, shuffle_buffer=data.shuffle_buffer,
                          deterministic=data.deterministic)
    val = None
    if split_size(manifest, data.val_split):
        val = eval_dataset(split_files(manifest_dir, manifest, data.val_split), spec, global_batch,
                           examples=split_size(manifest, data.val_split), pad=pad)
    return train, val


def image_size_for(config) -> int:
    return config.data.image_size or get_backbone(config.model.backbone).default_size


def new_model(config, heads: Dict[str, int], image_size: int):
    device = None
    if config.data.augment_on == "device":
        device = augment.device_layers(augment.get_preset(config.data.augment))
    model_config = config.model
    if config.training.stages:  # the first stage decides what is trainable at the start
        first = config.training.stages[0]
        model_config = dataclasses.replace(model_config, trainable=first.trainable,
                                           unfreeze_blocks=first.unfreeze_blocks)
    return build_model(model_config, heads, image_size, device, normalize=config.data.normalize_in == "model")


def compile_model(model, config, manifest: dict, heads: Dict[str, int], global_batch: int, steps_per_epoch: int,
                  epochs: int, optimizer_name: Optional[str] = None, rate: Optional[float] = None) -> None:
    counts = {head: train_counts(manifest, config.data.train_split, head) for head in heads}
    from_logits = config.model.output_activation == "linear"
    model.compile(
        optimizer=build_optimizer(config.optimizer, config.schedule, global_batch, steps_per_epoch, epochs,
                                  optimizer_name, rate),
        loss=build_losses(config.loss, list(heads), counts, from_logits),
        loss_weights={head: config.loss.head_weights.get(head, 1.0) for head in heads},
        # weighted: HeadAccuracy uses a weight only to skip zero-weight (padding) examples
        weighted_metrics={head: head_metrics(classes) for head, classes in heads.items()},
        jit_compile=config.training.jit_compile,
        steps_per_execution=config.training.steps_per_execution,
    )


def apply_stage(model, config, stage) -> None:
    """Set what is trainable for a fine-tuning stage (report 003's frozen → last blocks → all)."""
    set_trainable(model, stage.trainable, stage.unfreeze_blocks, config.model.freeze_batchnorm,
                  get_backbone(config.model.backbone))


def stage_plan(config) -> Tuple[Tuple[int, int, object], ...]:
    """``((first epoch, end epoch, stage or None), …)`` covering all epochs."""
    if not config.training.stages:
        return ((0, config.training.epochs, None),)
    plan, start = [], 0
    for stage in config.training.stages:
        plan.append((start, start + stage.epochs, stage))
        start += stage.epochs
    return tuple(plan)


def load_dataset(config):
    manifest_dir = ensure_dataset(config.data)
    return manifest_dir, load_manifest(manifest_dir)
