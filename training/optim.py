"""Optimisers and learning-rate schedules by name.

Schedules are ``LearningRateSchedule`` objects driven by the optimiser's step counter (epoch =
step // steps_per_epoch), registered for serialisation: the schedule and its position are part
of the saved optimizer, so a resumed run continues the same curve. ``plateau`` keeps a constant
rate that the (resumable) ReduceLROnPlateau callback lowers.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Sequence

import keras
from keras import ops

from common.registry import Registry
from models.layers import PACKAGE
from training.config import ConstantSchedule, CosineSchedule, PlateauSchedule, StepSchedule, WarmupExpDecaySchedule

OPTIMIZERS = Registry("optimizer", where="optimizer.name")


@OPTIMIZERS.register("sgd")
def _sgd(config, learning_rate, **extra):
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=config.nesterov, **extra)


@OPTIMIZERS.register("adam")
def _adam(config, learning_rate, **extra):
    return keras.optimizers.Adam(learning_rate, **extra)


@OPTIMIZERS.register("adamw")
def _adamw(config, learning_rate, **extra):
    return keras.optimizers.AdamW(learning_rate, **extra)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(config, learning_rate, **extra):
    return keras.optimizers.RMSprop(learning_rate, momentum=config.momentum, **extra)


class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Base: the rate of epoch ``step // steps_per_epoch`` (piecewise constant within an epoch)."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / float(self.steps_per_epoch))
        return ops.cast(self.rate(epoch), "float32")

    def rate(self, epoch):
        raise NotImplementedError

    def get_config(self):
        return {"steps_per_epoch": self.steps_per_epoch}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Report004Schedule(EpochSchedule):
    """Report 004's ``lr_curve``: linear warm-up for ``warmup_epochs``, then ``peak·exp(-k·epoch)``.

    Exactly as the report wrote it: during warm-up ``start + epoch·(peak - start)/6`` (note the 6
    with 5 warm-up epochs), afterwards ``peak·exp(-0.1·epoch)``.
    """

    def __init__(self, steps_per_epoch, start_lr=1e-6, peak_lr=0.1, warmup_epochs=5, warmup_divisor=6.0,
                 decay_rate=0.1):
        super().__init__(steps_per_epoch)
        self.start_lr, self.peak_lr, self.warmup_epochs = float(start_lr), float(peak_lr), int(warmup_epochs)
        self.warmup_divisor, self.decay_rate = float(warmup_divisor), float(decay_rate)

    def rate(self, epoch):
        warmup = self.start_lr + epoch * ((self.peak_lr - self.start_lr) / self.warmup_divisor)
        decay = self.peak_lr * ops.exp(-self.decay_rate * epoch)
        return ops.where(epoch < self.warmup_epochs, warmup, decay)

    def get_config(self):
        return {**super().get_config(), "start_lr": self.start_lr, "peak_lr": self.peak_lr,
                "warmup_epochs": self.warmup_epochs, "warmup_divisor": self.warmup_divisor,
                "decay_rate": self.decay_rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StepDecay(EpochSchedule):
    """Multiply the rate by ``factor`` every ``every`` epochs, or at the epochs listed in ``at``."""

    def __init__(self, steps_per_epoch, initial_lr, factor=0.1, every=10, at: Sequence[int] = ()):
        super().__init__(steps_per_epoch)
        self.initial_lr, self.factor, self.every, self.at = float(initial_lr), float(factor), int(every), list(at)

    def rate(self, epoch):
        if self.at:
            drops = sum(ops.cast(epoch >= float(boundary), "float32") for boundary in self.at)
        else:
            drops = ops.floor(epoch / float(self.every))
        return self.initial_lr * ops.power(self.factor, drops)

    def get_config(self):
        return {**super().get_config(), "initial_lr": self.initial_lr, "factor": self.factor,
                "every": self.every, "at": self.at}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr`` at ``total_steps``."""

    def __init__(self, initial_lr, total_steps, warmup_steps=0, min_lr=0.0):
        self.initial_lr, self.total_steps = float(initial_lr), int(total_steps)
        self.warmup_steps, self.min_lr = int(warmup_steps), float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.initial_lr * (step + 1.0) / max(1.0, float(self.warmup_steps))
        progress = ops.clip((step - self.warmup_steps) / max(1.0, float(self.total_steps - self.warmup_steps)), 0, 1)
        cosine = self.min_lr + 0.5 * (self.initial_lr - self.min_lr) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"initial_lr": self.initial_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr": self.min_lr}


# each schedule config class (training.config.SCHEDULES names them) → make(config, rate, steps per epoch, epochs)
SCHEDULE_BUILDERS: Dict[type, Callable] = {
    ConstantSchedule: lambda config, rate, steps, epochs: rate,
    PlateauSchedule: lambda config, rate, steps, epochs: rate,  # constant; the ReduceLROnPlateau callback lowers it
    WarmupExpDecaySchedule: lambda config, rate, steps, epochs: Report004Schedule(
        steps, config.start_lr, config.peak_lr, config.warmup_epochs, config.warmup_divisor, config.decay_rate),
    StepSchedule: lambda config, rate, steps, epochs: StepDecay(steps, rate, config.drop_factor, config.drop_every,
                                                                config.drop_at),
    CosineSchedule: lambda config, rate, steps, epochs: WarmupCosine(rate, steps * epochs, steps * config.warmup_epochs,
                                                                     config.min_lr),
}


def learning_rate(optimizer_config, global_batch: int) -> float:
    """The configured rate, scaled by ``global_batch / base_batch_size`` when asked."""
    rate = optimizer_config.learning_rate
    if optimizer_config.scale_with_batch:
        rate *= global_batch / optimizer_config.base_batch_size
    return rate


def build_optimizer(optimizer_config, schedule_config, global_batch: int, steps_per_epoch: int, epochs: int,
                    name=None, rate=None):
    """An optimizer with its schedule; ``name``/``rate`` override the config (fine-tuning stages)."""
    rate = learning_rate(optimizer_config, global_batch) if rate is None else rate
    schedule = SCHEDULE_BUILDERS[type(schedule_config)](schedule_config, rate, max(1, steps_per_epoch), epochs)
    factory = OPTIMIZERS.get(name or optimizer_config.name)
    extra = {}
    if optimizer_config.weight_decay:
        extra["weight_decay"] = optimizer_config.weight_decay
    if optimizer_config.clipnorm:
        extra["clipnorm"] = optimizer_config.clipnorm
    return factory(optimizer_config, schedule, **extra)


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer uses now (evaluates a schedule at the current step)."""
    rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))
