"""Cross-field checks of a :class:`training.config.Config` (types are checked while loading).

Names are checked against the registries, so a newly registered backbone, head, loss, optimiser,
schedule or augmentation preset is accepted everywhere without touching this file.
"""
from __future__ import annotations

from common.errors import UserError, describe_choices

PIXEL_PLACES = ("model", "pipeline")
AUGMENT_PLACES = ("host", "device")
BALANCES = ("none", "weights", "resample")
MONITOR_MODES = ("min", "max")


def _choice(where: str, value, allowed, kind: str) -> None:
    if value not in allowed:
        raise UserError(f"{where}: " + describe_choices(kind, value, allowed))


def _range(where: str, value, low, high=None, expected: str = "") -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        raise UserError(f"{where}: expected {expected} (received {value!r})")


def check_config(config) -> None:
    check_data(config.data)
    check_model(config.model)
    check_training(config)


def check_data(data) -> None:
    from training.augment import PRESETS

    if not data.shards:
        raise UserError("data.shards: expected the folder holding manifest.json (from python -m data_prep.build)")
    _range("data.image_size", data.image_size, 0, expected="0 (backbone default) or at least 32")
    if 0 < data.image_size < 32:
        raise UserError(f"data.image_size: expected 0 (backbone default) or at least 32 (received {data.image_size})")
    _range("data.batch_size", data.batch_size, 1, expected="1 or more")
    _range("data.global_batch_size", data.global_batch_size, 1, expected="1 or more")
    _range("data.bbox_margin", data.bbox_margin, 0.0, 1.0, "a fraction in [0, 1]")
    _range("data.shuffle_buffer", data.shuffle_buffer, 1, expected="1 or more")
    _choice("data.augment", data.augment, PRESETS, "augmentation preset")
    _choice("data.augment_on", data.augment_on, AUGMENT_PLACES, "placement")
    _choice("data.normalize_in", data.normalize_in, PIXEL_PLACES, "placement")
    _choice("data.class_balance", data.class_balance, BALANCES, "class balance")
    if len(set(data.heads)) != len(data.heads):
        raise UserError(f"data.heads: a head is listed twice ({', '.join(data.heads)})")


def check_model(model) -> None:
    from models.backbones import BACKBONES
    from models.build import TRAINABLE_MODES
    from models.heads import HEADS

    _choice("model.backbone", model.backbone, BACKBONES.names(), "backbone")
    _choice("model.head", model.head, HEADS.names(), "head")
    _choice("model.trainable", model.trainable, TRAINABLE_MODES, "trainable mode")
    _range("model.dropout", model.dropout, 0.0, 0.95, "a rate in [0, 0.95]")
    _range("model.l2", model.l2, 0.0, expected="0 or more")
    _range("model.unfreeze_blocks", model.unfreeze_blocks, 0, expected="0 or more")
    _range("model.width_multiplier", model.width_multiplier, 0.1, 2.0, "a width in [0.1, 2]")
    _choice("model.output_activation", model.output_activation, ("softmax", "linear"), "output activation")
    if any(units < 1 for units in model.trunk_units + model.head_units):
        raise UserError("model.trunk_units / model.head_units: every layer needs at least one unit")


def check_training(config) -> None:
    from training.losses import LOSSES
    from training.optim import OPTIMIZERS, SCHEDULES
    from training.strategy import STRATEGIES

    loss, optimizer, schedule, training = config.loss, config.optimizer, config.schedule, config.training
    for head, name in [(None, loss.name)] + list(loss.per_head.items()):
        _choice(f"loss.per_head.{head}" if head else "loss.name", name, LOSSES.names(), "loss")
    if isinstance(loss.alpha, str) and loss.alpha != "class_frequency":
        raise UserError(f"loss.alpha: expected a number in [0, 1] or 'class_frequency' (received {loss.alpha!r})")
    if not isinstance(loss.alpha, str):
        _range("loss.alpha", loss.alpha, 0.0, 1.0, "a number in [0, 1] or 'class_frequency'")
    _range("loss.gamma", loss.gamma, 0.0, expected="0 or more")
    _range("loss.label_smoothing", loss.label_smoothing, 0.0, 0.5, "a fraction in [0, 0.5]")
    if any(weight < 0 for weight in loss.head_weights.values()):
        raise UserError("loss.head_weights: weights must be 0 or more")
    _choice("optimizer.name", optimizer.name, OPTIMIZERS.names(), "optimizer")
    _range("optimizer.learning_rate", optimizer.learning_rate, 1e-12, 10.0, "a rate in (0, 10]")
    _range("optimizer.momentum", optimizer.momentum, 0.0, 0.9999, "a momentum in [0, 1)")
    _range("optimizer.weight_decay", optimizer.weight_decay, 0.0, expected="0 or more")
    _choice("schedule.name", schedule.name, SCHEDULES.names(), "schedule")
    _choice("training.strategy", training.strategy, STRATEGIES, "strategy")
    _choice("training.mixed_precision", training.mixed_precision, (None, "mixed_bfloat16", "mixed_float16"),
            "precision policy")
    _range("training.epochs", training.epochs, 1, expected="1 or more")
    _range("training.steps_per_epoch", training.steps_per_epoch, 1, expected="1 or more")
    _range("training.steps_per_execution", training.steps_per_execution, 1, expected="1 or more")
    if not (training.model_name.endswith(".keras") or training.model_name.endswith(".h5")):
        raise UserError(f"training.model_name: expected a file name ending in .keras or .h5 "
                        f"(received {training.model_name!r})")
    for index, stage in enumerate(training.stages):
        from models.build import TRAINABLE_MODES

        _range(f"training.stages[{index}].epochs", stage.epochs, 1, expected="1 or more")
        _choice(f"training.stages[{index}].trainable", stage.trainable, TRAINABLE_MODES, "trainable mode")
        if stage.optimizer is not None:
            _choice(f"training.stages[{index}].optimizer", stage.optimizer, OPTIMIZERS.names(), "optimizer")
