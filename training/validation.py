"""Checks of a :class:`training.config.Config` beyond its types: names against the registries that
hold them, numeric ranges, cross-field rules. ``load_config`` = read (types) + check.

Names are looked up in the registries themselves (each raises the error naming its config key), so
a newly registered backbone, head, loss, optimiser, schedule, augmentation preset, class balance or
strategy is valid everywhere without touching this file.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

from common.errors import UserError
from data_prep.splits import SPLITTERS
from data_prep.synthetic import SYNTHETIC
from models.backbones import BACKBONES
from models.build import TRAINABLE
from models.heads import HEADS
from training.augment import PRESETS
from training.config import SCHEDULES, Config, read_config
from training.data import BALANCES
from training.distribute import STRATEGIES
from training.losses import loss_spec
from training.optim import OPTIMIZERS


def load_config(name: str, overrides: Sequence[str] = ()) -> Config:
    """Read, override, type-check and validate a configuration (``name`` may be a bare file name)."""
    config = read_config(name, overrides)
    check_config(config)
    return config


def canonical(config: Config) -> Config:
    """``config`` with registry aliases replaced by the registered names (a run saved with ``head:
    report004`` is the same run as one with ``head: trunk_mlp``)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, head=HEADS.canonical(config.model.head)))


def _range(where: str, value, low, high=None, expected: str = "", above: bool = False, below: bool = False) -> None:
    """``value`` within [low, high] (``above``/``below``: excluding that end); ``None`` is not checked."""
    if value is None:
        return
    if (value <= low if above else value < low) or (high is not None and (value >= high if below else value > high)):
        raise UserError(f"{where}: expected {expected} (received {value!r})")


MAX_IMAGE_SIZE = 1024  # 4096 px inputs exhaust the memory (and crashed TensorFlow) before the first step
RATE = dict(low=1e-12, high=10.0, expected="a rate in (0, 10]")
SEEDS = 2 ** 32 - 1  # what keras.utils.set_random_seed (NumPy's generator) accepts
# the schedules' numbers, by field name (a name means the same in every schedule that has it)
SCHEDULE_RANGES = {
    "warmup_epochs": dict(low=0, expected="0 or more"), "start_lr": RATE, "peak_lr": RATE,
    "min_lr": dict(low=0.0, high=10.0, expected="a rate in [0, 10]"),
    "warmup_divisor": dict(low=0.0, above=True, expected="more than 0"),
    "decay_rate": dict(low=0.0, expected="0 or more"), "drop_every": dict(low=1, expected="1 or more"),
    "drop_factor": dict(low=0.0, high=1.0, above=True, expected="a factor in (0, 1]"),
    "factor": dict(low=0.0, high=1.0, above=True, below=True, expected="a factor in (0, 1)"),
    "patience": dict(low=0, expected="0 or more"), "cooldown": dict(low=0, expected="0 or more"),
    "min_delta": dict(low=0.0, expected="0 or more"),
}


def check_finite(value, where: str = "") -> None:
    """Every number anywhere in the configuration is finite: a NaN compares false with every bound,
    so it would pass the range checks and surface later as "training diverged"."""
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            check_finite(getattr(value, field.name), f"{where}.{field.name}" if where else field.name)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number (received {value})")


def check_config(config: Config) -> None:
    check_finite(config)
    check_data(config.data)
    check_model(config.model)
    check_training(config)
    check_schedule(config.schedule)


def check_schedule(schedule) -> None:
    for field in dataclasses.fields(schedule):
        if field.name in SCHEDULE_RANGES:
            _range(f"schedule.{field.name}", getattr(schedule, field.name), **SCHEDULE_RANGES[field.name])
    if any(epoch < 1 for epoch in getattr(schedule, "drop_at", ())):
        raise UserError(f"schedule.drop_at: expected epochs of 1 or more (received {list(schedule.drop_at)})")


def check_data(data) -> None:
    if not data.shards:
        raise UserError("data.shards: expected the folder holding manifest.json (from python -m data_prep.build)")
    if data.image_size < 0 or 0 < data.image_size < 32 or data.image_size > MAX_IMAGE_SIZE:
        raise UserError(f"data.image_size: expected 0 (the backbone's default) or 32 to {MAX_IMAGE_SIZE} pixels "
                        f"(received {data.image_size}; the largest backbone here, EfficientNet-B7, was made for 600)")
    _range("data.batch_size", data.batch_size, 1, expected="1 or more")
    _range("data.global_batch_size", data.global_batch_size, 1, expected="1 or more")
    _range("data.bbox_margin", data.bbox_margin, 0.0, 1.0, "a fraction in [0, 1]")
    _range("data.shuffle_buffer", data.shuffle_buffer, 1, expected="1 or more")
    PRESETS.get(data.augment)
    BALANCES.get(data.class_balance)
    if len(set(data.heads)) != len(data.heads):
        raise UserError(f"data.heads: a head is listed twice ({', '.join(data.heads)})")
    if data.prepare is not None:
        SYNTHETIC.get(data.prepare.synthetic_layout, where="data.prepare.synthetic_layout")
        SPLITTERS.get(data.prepare.split, where="data.prepare.split")


def check_model(model) -> None:
    BACKBONES.get(model.backbone)
    HEADS.get(model.head)
    TRAINABLE.get(model.trainable)
    _range("model.dropout", model.dropout, 0.0, 0.95, "a rate in [0, 0.95]")
    _range("model.l2", model.l2, 0.0, expected="0 or more")
    _range("model.unfreeze_blocks", model.unfreeze_blocks, 0, expected="0 or more")
    _range("model.width_multiplier", model.width_multiplier, 0.1, 2.0, "a width in [0.1, 2]")
    if any(units < 1 for units in model.trunk_units + model.head_units):
        raise UserError("model.trunk_units / model.head_units: every layer needs at least one unit")


def check_training(config: Config) -> None:
    loss, optimizer, training = config.loss, config.optimizer, config.training
    for head in [None] + list(loss.per_head):
        loss_spec(loss, head)  # the registry names the key of an unknown loss
    if not isinstance(loss.alpha, str):
        _range("loss.alpha", loss.alpha, 0.0, 1.0, "a number in [0, 1] or 'class_frequency'")
    _range("loss.gamma", loss.gamma, 0.0, expected="0 or more")
    _range("loss.label_smoothing", loss.label_smoothing, 0.0, 0.5, "a fraction in [0, 0.5]")
    if any(weight < 0 for weight in loss.head_weights.values()):
        raise UserError("loss.head_weights: weights must be 0 or more")
    OPTIMIZERS.get(optimizer.name)
    _range("optimizer.learning_rate", optimizer.learning_rate, **RATE)
    _range("optimizer.momentum", optimizer.momentum, 0.0, 0.9999, "a momentum in [0, 1)")
    _range("optimizer.weight_decay", optimizer.weight_decay, 0.0, expected="0 or more")
    _range("optimizer.clipnorm", optimizer.clipnorm, 0.0, above=True, expected="more than 0")
    if optimizer.scale_with_batch:
        _range("optimizer.base_batch_size", optimizer.base_batch_size, 1, expected="1 or more")
    _range("training.seed", training.seed, 0, SEEDS, f"an integer in [0, {SEEDS}]")
    _range("training.early_stopping_patience", training.early_stopping_patience, 0, expected="0 or more")
    _range("training.verbose", training.verbose, 0, 2, "0, 1 or 2")
    SCHEDULES.get(config.schedule.name)
    STRATEGIES.get(training.strategy)
    _range("training.epochs", training.epochs, 1, expected="1 or more")
    _range("training.steps_per_epoch", training.steps_per_epoch, 1, expected="1 or more")
    _range("training.steps_per_execution", training.steps_per_execution, 1, expected="1 or more")
    name = training.model_name
    stem, suffix = os.path.splitext(name)
    if suffix not in (".keras", ".h5") or not stem or stem.startswith(".") or "/" in name or "\\" in name \
            or name == "last.keras":
        raise UserError("training.model_name: expected a file name ending in .keras or .h5, written inside the run "
                        f"folder (not a path, nor last.keras, the last epoch's model) (received {name!r})")
    for index, stage in enumerate(training.stages):
        _range(f"training.stages[{index}].epochs", stage.epochs, 1, expected="1 or more")
        TRAINABLE.get(stage.trainable, where=f"training.stages[{index}].trainable")
        if stage.optimizer is not None:
            OPTIMIZERS.get(stage.optimizer, where=f"training.stages[{index}].optimizer")
        _range(f"training.stages[{index}].learning_rate", stage.learning_rate, **RATE)
        _range(f"training.stages[{index}].unfreeze_blocks", stage.unfreeze_blocks, 0, expected="0 or more")

