"""Typed, strict training configuration: defaults → YAML → ``--set a.b=value`` → types → freeze.

Every section is a frozen dataclass. Unknown keys, wrong types and values outside a ``Literal`` are
errors that name the key, what is allowed and what was received; the allowed values are declared
once, on the field. The schedule is one of several dataclasses chosen by its ``name``, so a key of
another schedule (a ``drop_every`` under ``cosine``) is an error instead of being ignored. Fields a
resumed run may change are marked on the fields themselves (:func:`resume_mutable`).

This module imports no Keras: an entry point reads the configuration, chooses the Keras backend
(``training.backend``), and only then imports what uses Keras. Names that registries hold
(backbones, losses, …) and numeric ranges are checked by :mod:`training.validation`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Union

import yaml

from common import fs
from common.errors import UserError
from common.registry import Registry
from common.typed import from_mapping, path, to_plain
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RESUME = "resume_mutable"


def resume_mutable(default):
    """A field that may differ when a run is resumed (another machine, more epochs, the data moved)."""
    return dataclasses.field(default=default, metadata={RESUME: True})


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How to create the dataset when ``data.shards`` holds no manifest yet (the demo does this)."""

    synthetic_layout: str = "stanford_cars"
    makes: int = 6
    models_per_make: int = 4
    images_per_model: int = 30
    seed: int = 0
    split: str = "stratified"
    max_side: Optional[int] = 128


@dataclasses.dataclass(frozen=True)
class DataConfig:
    shards: str = resume_mutable("")  # folder holding manifest.json (local or gs://)
    heads: Tuple[str, ...] = ()  # empty: every head of the manifest
    image_size: int = 0  # 0: the backbone's native size
    batch_size: int = 32  # per replica
    global_batch_size: Optional[int] = None  # alternative: fixed global batch, divided by the replicas
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    crop_to_bbox: bool = False
    bbox_margin: float = 0.1
    augment: str = "none"  # a preset of training.augment
    augment_on: Literal["host", "device"] = "host"  # tf.data, or Keras layers inside the model
    normalize_in: Literal["model", "pipeline"] = "model"
    class_balance: str = "none"  # a balance of training.data (none, weights, resample)
    balance_head: str = "model"
    shuffle_buffer: int = 2048
    deterministic: bool = False  # reproducible input order (parallel reads wait for each other)
    prepare: Optional[PrepareConfig] = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_b0"
    weights: str = "imagenet"  # imagenet | none | path to a weights file
    width_multiplier: float = 1.0  # MobileNetV2's alpha
    head: str = "trunk_mlp"  # a head of models.heads (trunk_mlp, alias report004; linear)
    trunk_units: Tuple[int, ...] = (512,)
    head_units: Tuple[int, ...] = (256,)
    dropout: float = 0.3
    l2: float = 0.0
    output_activation: Literal["softmax", "linear"] = "softmax"
    trainable: str = "all"  # a mode of models.build (all, frozen, last_blocks)
    unfreeze_blocks: int = 0
    freeze_batchnorm: bool = False


@dataclasses.dataclass(frozen=True)
class LossConfig:
    name: str = "sparse_categorical_crossentropy"
    per_head: Dict[str, str] = dataclasses.field(default_factory=dict)  # head → loss name override
    head_weights: Dict[str, float] = dataclasses.field(default_factory=dict)  # default 1.0
    label_smoothing: float = 0.0
    alpha: Union[float, Literal["class_frequency"]] = 0.25  # focal losses
    gamma: float = 2.0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    clipnorm: Optional[float] = None
    scale_with_batch: bool = False  # learning_rate × global batch / base_batch_size
    base_batch_size: int = 256


# Runs saved before the schedules were typed wrote every schedule's keys with these values: such keys
# are dropped when they belong to another schedule and still hold their old default.
LEGACY_SCHEDULE_DEFAULTS = {"warmup_epochs": 0, "start_lr": 1e-6, "peak_lr": 0.1, "warmup_divisor": 6.0,
                            "decay_rate": 0.1, "drop_every": 10, "drop_at": [], "drop_factor": 0.1, "min_lr": 0.0,
                            "monitor": "val_loss", "factor": 0.1, "patience": 5, "cooldown": 0, "min_delta": 1e-4}


# --- schedules: one dataclass each, chosen by ``name``; SCHEDULES is the one table of their names ---

SCHEDULES: Registry[type] = Registry("schedule", where="schedule.name")


def schedule(*aliases: str):
    """Register a schedule config under its ``name`` and ``aliases`` (earlier names still accepted)."""
    def register(cls):
        cls.ALIASES = aliases  # what the config reader (common.typed) accepts besides the name
        return SCHEDULES.register(cls.__dataclass_fields__["name"].default, *aliases)(cls)

    return register


class Schedule:
    """What every schedule config shares: reading a run saved with the old flat schedule."""

    @classmethod
    def cleaned(cls, raw: dict) -> dict:
        """``raw`` without the other schedules' keys that an old run wrote with their old defaults."""
        return {key: value for key, value in raw.items()
                if not (key in LEGACY_SCHEDULE_DEFAULTS and value == LEGACY_SCHEDULE_DEFAULTS[key])}


@schedule()
@dataclasses.dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """The optimizer's learning rate throughout."""

    name: Literal["constant"] = "constant"


@schedule("report004")
@dataclasses.dataclass(frozen=True)
class WarmupExpDecaySchedule(Schedule):
    """Report 004's ``lr_curve``: ``start + epoch·(peak - start)/warmup_divisor`` for ``warmup_epochs``,
    then ``peak·exp(-decay_rate·epoch)`` (its 6 with 5 warm-up epochs kept as written)."""

    name: Literal["warmup_exp_decay"] = "warmup_exp_decay"
    warmup_epochs: int = 5
    start_lr: float = 1e-6
    peak_lr: float = 0.1
    warmup_divisor: float = 6.0
    decay_rate: float = 0.1

    @classmethod
    def cleaned(cls, raw: dict) -> dict:
        values = super().cleaned(raw)
        if set(LEGACY_SCHEDULE_DEFAULTS) <= set(raw) and not raw.get("warmup_epochs"):
            values["warmup_epochs"] = 5  # the old flat schedule read 0 as the report's 5 warm-up epochs
        return values


@schedule()
@dataclasses.dataclass(frozen=True)
class StepSchedule(Schedule):
    """The rate × ``drop_factor`` every ``drop_every`` epochs, or at the epochs in ``drop_at``."""

    name: Literal["step"] = "step"
    drop_every: int = 10
    drop_at: Tuple[int, ...] = ()
    drop_factor: float = 0.1


@schedule()
@dataclasses.dataclass(frozen=True)
class CosineSchedule(Schedule):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr``."""

    name: Literal["cosine"] = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 0.0


@schedule()
@dataclasses.dataclass(frozen=True)
class PlateauSchedule(Schedule):
    """A constant rate that ReduceLROnPlateau lowers (resumable)."""

    name: Literal["plateau"] = "plateau"
    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 5
    cooldown: int = 0
    min_delta: float = 1e-4
    min_lr: float = 0.0


SCHEDULE_CONFIGS = (ConstantSchedule, WarmupExpDecaySchedule, StepSchedule, CosineSchedule, PlateauSchedule)
ScheduleConfig = Union[ConstantSchedule, WarmupExpDecaySchedule, StepSchedule, CosineSchedule, PlateauSchedule]
@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One fine-tuning stage (report 003): what is trainable and how long; optimiser overrides."""

    epochs: int = 1
    trainable: str = "all"
    unfreeze_blocks: int = 0
    optimizer: Optional[str] = None
    learning_rate: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    epochs: int = resume_mutable(10)  # more epochs continue a finished run
    steps_per_epoch: Optional[int] = None  # default: training examples // global batch
    backend: Literal["auto", "tensorflow", "jax"] = resume_mutable("auto")  # auto: KERAS_BACKEND, JAX on a TPU
    strategy: str = resume_mutable("auto")  # a strategy of training.distribute (auto, tpu, gpu, cpu, mirrored)
    tpu: str = resume_mutable("")  # TPU name or address for TPUClusterResolver ("" = discover)
    multi_host: bool = resume_mutable(False)  # JAX on several hosts (a TPU pod slice): keras.distribution.initialize()
    mixed_precision: Optional[Literal["mixed_bfloat16", "mixed_float16"]] = None
    jit_compile: Optional[bool] = resume_mutable(None)  # None: compile on JAX (else op by op), not on TensorFlow
    steps_per_execution: int = resume_mutable(1)
    monitor: str = "val_loss"  # metric that picks the best model
    early_stopping_patience: Optional[int] = None
    early_stopping_monitor: str = "val_loss"
    model_name: str = "model.keras"  # best model; a name ending in .h5 also writes that file
    save_h5: bool = False
    seed: int = 42
    evaluate_split: Optional[str] = resume_mutable("test")
    stages: Tuple[StageConfig, ...] = ()
    verbose: int = resume_mutable(2)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "run"
    description: str = resume_mutable("")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ConstantSchedule)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.training.stages) if self.training.stages else self.training.epochs


# ---------------------------------------------------------------------------------------------
# Reading and comparing configurations


def changed_fields(saved, wanted, where: str = "") -> List[str]:
    """Keys whose values differ between two configurations, except fields marked resume-mutable."""
    if dataclasses.is_dataclass(saved) and type(saved) is type(wanted):
        changed = []
        for field in dataclasses.fields(wanted):
            if not field.metadata.get(RESUME):
                changed += changed_fields(getattr(saved, field.name), getattr(wanted, field.name),
                                          path(where, field.name))
        return changed
    return [] if to_plain(saved) == to_plain(wanted) else [where]


# ---------------------------------------------------------------------------------------------
# Files and overrides


def resolvepath(name: str) -> str:
    """A config path as given, or a bare file name looked up in ``configs/``."""
    if fs.exists(name):
        return name
    if os.sep not in name and "/" not in name:
        for candidate in (name, name + ".yaml"):
            path = os.path.join(CONFIG_DIR, candidate)
            if os.path.exists(path):
                return path
    available = sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")) if os.path.isdir(CONFIG_DIR) else []
    close = difflib.get_close_matches(name, available, n=1)
    raise UserError(f"--config: no file {name!r} here or in configs/"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; available: {', '.join(available) or 'none'}")


def read_yaml(path: str) -> dict:
    """A YAML mapping; a file that is not one is a single line naming where and why."""
    try:
        raw = yaml.safe_load(fs.read_text(path))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (expected YAML)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        hint = " (YAML indents with spaces, not tabs)" if "'\\t'" in problem else ""
        raise UserError(f"{path} is not valid YAML{where}: {problem}{hint}") from None
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level (received {type(raw).__name__})")
    return raw or {}


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML: numbers, lists, null, true/false)."""
    for override in overrides:
        if "=" not in override:
            raise UserError(f"--set: expected key=value such as optimizer.learning_rate=0.001 (received {override!r})")
        key, text = override.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def read_config(name: str, overrides: Sequence[str] = ()) -> Config:
    """Read a configuration file (a bare name is looked up in ``configs/``), apply the overrides and
    check every type. Names and ranges: :func:`training.validation.check_config`."""
    return config_from_dict(apply_overrides(read_yaml(resolvepath(name)), overrides))


def config_from_dict(raw: dict) -> Config:
    return from_mapping(Config, raw)


def dump_config(config: Config, header: str = "") -> str:
    """The resolved configuration as YAML (reads back to an equal :class:`Config`)."""
    text = yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=None)
    return (header.rstrip() + "\n" if header else "") + text
