"""Callbacks that make training resumable at any moment.

:class:`RunCheckpoint` runs last at the end of every epoch: it appends the epoch's row to the
history, saves the best model when the monitored metric improved, saves the epoch checkpoint,
rewrites ``history.csv`` and then commits ``state.json``. Early stopping and ReduceLROnPlateau
keep their counters in that state, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from typing import List, Optional

import keras
import tensorflow as tf

from common.errors import UserError
from training.config import PlateauSchedule
from training.console import EpochLine
from training.optim import current_learning_rate
from training.run import Best, RunDir, RunState, copy_atomic, save_model_atomic

LOG = logging.getLogger("training.callbacks")
RESUMABLE_FIELDS = {"early_stopping": ("wait", "best", "stopped_epoch"),
                    "plateau": ("wait", "best", "cooldown_counter")}


class Resumable:
    """Mixin for Keras callbacks whose counters must survive a restart."""

    state_key = ""
    restored: Optional[dict] = None

    def state(self) -> dict:
        return {name: _plain(getattr(self, name, None)) for name in RESUMABLE_FIELDS[self.state_key]}

    def restore_after_reset(self) -> None:
        for name, value in (self.restored or {}).items():
            setattr(self, name, value)


class TrainingDiverged(UserError):
    """The loss stopped being a number; the run folder keeps the last finite epoch."""


def finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def divergence_message(what: str, epoch: int, step: Optional[int], rate: float, kept: int) -> str:
    where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
    kept_text = (f"The run folder keeps epoch {kept}, the last one with a finite loss (its best model and state)"
                 if kept else "No epoch had completed, so nothing was kept")
    return (f"training diverged: {what} became NaN or infinite at {where} (learning rate {rate:.3g}). {kept_text}. "
            "Try a lower optimizer.learning_rate, optimizer.clipnorm: 1.0, a warm-up (schedule.warmup_epochs) or "
            "mixed_bfloat16 instead of mixed_float16, in a new run folder (--out)")


class StopOnDivergence(keras.callbacks.Callback):
    """Stop at the first training step whose loss is not a finite number, with one clear line.

    Runs first at the end of an epoch too (a validation loss that is not a number), so the diverged
    epoch is never committed by :class:`RunCheckpoint`: ``state.json``, the best model and the
    history stay those of the last finite epoch. The batch hook is safe to run off the training
    thread (Keras dispatches it asynchronously on backends that allow it, so checking every step does
    not stall the accelerator); the error then surfaces a step or two later.
    """

    async_safe = True

    def __init__(self, state: RunState):
        super().__init__()
        self.state, self.epoch = state, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def stop(self, what: str, step: Optional[int]) -> None:
        raise TrainingDiverged(divergence_message(what, self.epoch + 1, step,
                                                  current_learning_rate(self.model.optimizer), self.state.epoch))

    def on_train_batch_end(self, batch, logs=None):
        if not finite((logs or {}).get("loss", 0.0)):
            self.stop("the training loss", batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        for key, what in (("loss", "the training loss"), ("val_loss", "the validation loss")):
            if not finite((logs or {}).get(key, 0.0)):
                self.stop(what, None)


def _plain(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isinf(value) or math.isnan(value) else value


class ResumableEarlyStopping(Resumable, keras.callbacks.EarlyStopping):
    state_key = "early_stopping"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters (Keras re-uses callbacks across fits) …
        self.restore_after_reset()  # … so the saved ones go back afterwards


class ResumableReduceLROnPlateau(Resumable, keras.callbacks.ReduceLROnPlateau):
    state_key = "plateau"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.restore_after_reset()


class HeadPrefixedLogs(keras.callbacks.Callback):
    """Give single-head runs the same log names as multi-head ones (``model_accuracy``, ``val_model_loss``).

    Keras 3 drops the output name when a model has one output; monitors such as
    ``val_model_accuracy``, the history columns and the curves must not depend on the head count.
    Runs first: later callbacks (early stopping, plateau, progress bar, history) see the new names.
    """

    def __init__(self, head: str, metric_names=("accuracy", "top5")):
        super().__init__()
        self.head, self.metric_names = head, tuple(metric_names)

    def rename(self, logs):
        if logs is None:
            return
        for prefix in ("", "val_"):
            for name in self.metric_names:
                if prefix + name in logs:
                    logs[f"{prefix}{self.head}_{name}"] = logs.pop(prefix + name)
            if prefix + "loss" in logs:
                logs[f"{prefix}{self.head}_loss"] = logs[prefix + "loss"]

    def on_epoch_end(self, epoch, logs=None):
        self.rename(logs)

    def on_test_end(self, logs=None):
        self.rename(logs)


class EpochSummaries(keras.callbacks.Callback):
    """TensorBoard scalars once per epoch (``logs/train``, ``logs/validation``, ``epoch_*`` tags as Keras).

    Keras' own TensorBoard callback has a per-batch hook, which makes Keras synchronise after every
    training step; epoch-level logging needs none.
    """

    def __init__(self, folder: str):
        super().__init__()
        self.folder, self.writers = folder, {}

    def writer(self, name: str):
        if name not in self.writers:
            self.writers[name] = tf.summary.create_file_writer(f"{self.folder}/{name}")
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        values = dict(logs or {})
        values.setdefault("learning_rate", current_learning_rate(self.model.optimizer))
        for key, value in values.items():
            name, writer = (key[4:], "validation") if key.startswith("val_") else (key, "train")
            with self.writer(writer).as_default():
                tf.summary.scalar(f"epoch_{name}", float(value), step=epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


def tensorboard_logs(stage_index: int = 0) -> bool:
    """Whether TensorBoard is installed (``tf.summary`` needs it to write); without it, one line says
    the run's TensorBoard logs are off (TF 2.21 no longer installs it, nor does a platform's JAX image)."""
    if importlib.util.find_spec("tensorboard") is not None:
        return True
    if stage_index == 0:
        LOG.warning("TensorBoard is not installed: this run writes no TensorBoard logs (logs/); history.csv "
                    "and the curves are kept as usual (pip install tensorboard to have them)")
    return False


def improved(value: float, best: Optional[float], mode: str) -> bool:
    """Whether ``value`` beats ``best``; a value that is not a finite number never does."""
    if not finite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def monitor_mode(monitor: str) -> str:
    return "max" if any(word in monitor for word in ("accuracy", "top5", "auc", "precision", "recall")) else "min"


def seed_generator_states(model) -> List[List[int]]:
    """The states of the model's random seed generators (dropout, Keras augmentation layers), in order.

    Keras does not save them with the model: a reloaded model would start its dropout masks and
    device-side augmentation from fresh seeds, so they are kept in the run's state instead.
    """
    return [[int(value) for value in keras.ops.convert_to_numpy(variable)] for variable in model.variables
            if variable.path.endswith("seed_generator_state")]


def restore_seed_generators(model, states: Optional[List[List[int]]]) -> None:
    """Put back what :func:`seed_generator_states` recorded (same architecture, same order)."""
    variables = [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]
    if states is None or len(states) != len(variables):
        return
    for variable, value in zip(variables, states):
        variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))


class RunCheckpoint(keras.callbacks.Callback):
    """Commit every completed epoch to the run folder (see the module docstring)."""

    def __init__(self, run: RunDir, state: RunState, monitor: str, best_names: List[str],
                 resumable: List[Resumable], stage: int = 0):
        super().__init__()
        self.run, self.state, self.monitor, self.mode = run, state, monitor, monitor_mode(monitor)
        self.best_names, self.resumable, self.stage = best_names, resumable, stage
        self.epoch_rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_rate = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        try:
            self.commit(epoch, dict(logs or {}))
        except OSError as error:  # a full disk, a lost mount, permissions: what was committed stays intact
            kept = self.state.epoch
            raise UserError(f"could not save epoch {epoch + 1} to {self.run.path} ({error.strerror or error}). "
                            f"The run's state is intact at epoch {kept}" + ("" if kept else " (nothing completed yet)")
                            + ": free space (or fix the folder) and run the same command to resume") from None

    def commit(self, epoch: int, logs: dict) -> None:
        """Checkpoint, best model, history, then ``state.json`` (the commit point) for ``epoch``.

        The monitor is one training reports (checked before the first step), so it is in ``logs``."""
        row = {"epoch": epoch + 1, "learning_rate": self.epoch_rate}
        row.update({key: float(value) for key, value in logs.items() if key != "learning_rate"})
        history = [item for item in self.state.history if item["epoch"] < epoch + 1] + [row]
        checkpoint, previous = self.run.checkpoint_name(epoch + 1), self.state.checkpoint
        write = self.run.writer  # the other hosts keep the same state in memory, and write nothing
        if write:
            save_model_atomic(self.model, self.run.join(checkpoint))
        value = float(logs[self.monitor])
        if improved(value, self.state.best.value if self.state.best else None, self.mode):
            self.state.best = Best(value, epoch + 1, self.monitor)
            if write:
                self.save_best(checkpoint)
        self.state.epoch, self.state.checkpoint, self.state.history, self.state.stage = (
            epoch + 1, checkpoint, history, self.stage)
        self.state.stopped_early = bool(self.model.stop_training)
        self.state.seed_generators = seed_generator_states(self.model)
        self.state.callbacks = {callback.state_key: callback.state() for callback in self.resumable}
        if write:
            self.run.write_history(history)
            self.run.write_state(self.state)
            self.run.remove_old_checkpoints(keep=(checkpoint, previous))  # the previous epoch: a fallback

    def save_best(self, checkpoint: str) -> None:
        for name in self.best_names:
            if name.endswith(".keras"):
                copy_atomic(self.run.join(checkpoint), self.run.join(name))
            else:
                save_model_atomic(self.model, self.run.join(name))


def best_model_names(config) -> List[str]:
    """``model.keras``, plus ``training.model_name`` (e.g. ``focal_loss.h5``) and ``model.h5`` when asked."""
    names = ["model.keras"]
    if config.training.model_name != "model.keras":
        names.append(config.training.model_name)
    if config.training.save_h5 and not any(name.endswith(".h5") for name in names):
        names.append("model.h5")
    return names


def run_callbacks(config, run: RunDir, state: RunState, stage_index: int, heads) -> List[keras.callbacks.Callback]:
    """The callbacks of one stage of ``training.fit``, their counters restored from ``state``.

    Modes are explicit: Keras' "auto" looks for a metric named like the monitor, and ours are per head.
    """
    resumable: List[Resumable] = []
    if config.training.early_stopping_patience:
        monitor = config.training.early_stopping_monitor
        resumable.append(ResumableEarlyStopping(monitor=monitor, patience=config.training.early_stopping_patience,
                                                mode=monitor_mode(monitor)))
    if isinstance(config.schedule, PlateauSchedule):  # ReduceLROnPlateau lowers the rate
        schedule = config.schedule
        resumable.append(ResumableReduceLROnPlateau(monitor=schedule.monitor, factor=schedule.factor,
                                                    patience=schedule.patience, cooldown=schedule.cooldown,
                                                    min_delta=schedule.min_delta, min_lr=schedule.min_lr,
                                                    mode=monitor_mode(schedule.monitor)))
    for callback in resumable:
        callback.restored = state.callbacks.get(callback.state_key)
    checkpoint = RunCheckpoint(run, state, config.training.monitor, best_model_names(config), resumable, stage_index)
    prefix = [HeadPrefixedLogs(next(iter(heads)))] if len(heads) == 1 else []
    board = [EpochSummaries(run.join("logs"))] if run.writer and tensorboard_logs(stage_index) else []
    line = [EpochLine(heads, config.total_epochs, state)] if config.training.verbose and run.writer else []
    return prefix + [StopOnDivergence(state)] + resumable + board + [checkpoint] + line
