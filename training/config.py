"""Typed, strict training configuration: defaults → YAML → ``--set a.b=value`` → validate → freeze.

Every section is a frozen dataclass. Unknown keys and wrong types are errors that name the key,
what is allowed and what was received. The resolved configuration is written to the run folder
as ``config.yaml`` and reads back to an equal object.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from typing import Dict, Optional, Sequence, Tuple, Union

import yaml

from common import fs
from common.errors import UserError

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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
    shards: str = ""  # folder holding manifest.json (local or gs://)
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
    augment_on: str = "host"  # host (tf.data) | device (Keras layers inside the model)
    normalize_in: str = "model"  # model | pipeline
    class_balance: str = "none"  # none | weights | resample
    balance_head: str = "model"
    shuffle_buffer: int = 2048
    deterministic: bool = False  # reproducible input order (parallel reads wait for each other)
    prepare: Optional[PrepareConfig] = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_b0"
    weights: str = "imagenet"  # imagenet | none | path to a weights file
    width_multiplier: float = 1.0  # MobileNetV2's alpha
    head: str = "report004"  # report004 | linear
    trunk_units: Tuple[int, ...] = (512,)
    head_units: Tuple[int, ...] = (256,)
    dropout: float = 0.3
    l2: float = 0.0
    output_activation: str = "softmax"
    trainable: str = "all"  # all | frozen | last_blocks
    unfreeze_blocks: int = 0
    freeze_batchnorm: bool = False


@dataclasses.dataclass(frozen=True)
class LossConfig:
    name: str = "sparse_categorical_crossentropy"
    per_head: Dict[str, str] = dataclasses.field(default_factory=dict)  # head → loss name override
    head_weights: Dict[str, float] = dataclasses.field(default_factory=dict)  # default 1.0
    label_smoothing: float = 0.0
    alpha: Union[float, str] = 0.25  # focal losses: a number or "class_frequency"
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


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"  # constant | report004 | step | cosine | plateau
    warmup_epochs: int = 0
    start_lr: float = 1e-6  # report004: warm-up start
    peak_lr: float = 0.1  # report004: the curve's initial rate
    warmup_divisor: float = 6.0  # report004: (peak - start) / 6 per warm-up epoch, as the report wrote it
    decay_rate: float = 0.1  # report004: peak × exp(-decay_rate × epoch)
    drop_every: int = 10  # step
    drop_at: Tuple[int, ...] = ()  # step: explicit epochs (instead of drop_every)
    drop_factor: float = 0.1  # step
    min_lr: float = 0.0  # cosine, plateau
    monitor: str = "val_loss"  # plateau
    factor: float = 0.1  # plateau
    patience: int = 5  # plateau
    cooldown: int = 0  # plateau
    min_delta: float = 1e-4  # plateau


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
    epochs: int = 10
    steps_per_epoch: Optional[int] = None  # default: training examples // global batch
    strategy: str = "auto"  # auto | tpu | gpu | cpu | mirrored
    tpu: str = ""  # TPU name or address for TPUClusterResolver ("" = discover)
    mixed_precision: Optional[str] = None  # mixed_bfloat16 | mixed_float16
    jit_compile: bool = False
    steps_per_execution: int = 1
    monitor: str = "val_loss"  # metric that picks the best model
    early_stopping_patience: Optional[int] = None
    early_stopping_monitor: str = "val_loss"
    model_name: str = "model.keras"  # best model; a name ending in .h5 also writes that file
    save_h5: bool = False
    seed: int = 42
    evaluate_split: Optional[str] = "test"
    stages: Tuple[StageConfig, ...] = ()
    verbose: int = 2


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "run"
    description: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.training.stages) if self.training.stages else self.training.epochs


# ---------------------------------------------------------------------------------------------
# Strict conversion of plain data (YAML) into the dataclasses


def _type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is Union:
        return " or ".join(_type_name(arg) for arg in typing.get_args(kind))
    if origin in (tuple, Tuple):
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    if origin in (dict, Dict):
        return f"a mapping of {_type_name(typing.get_args(kind)[1])}"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(kind, str(kind))


def _wrong(where: str, kind, value):
    return UserError(f"{where}: expected {_type_name(kind)} (received {value!r})")


def coerce(value, kind, where: str):
    """Check ``value`` against the annotation ``kind`` and convert it (lists → tuples, ints → floats)."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, where)
    if origin is Union:
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in (option for option in options if option is not type(None)):
            try:
                return coerce(value, option, where)
            except UserError:
                continue
        raise _wrong(where, kind, value)
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, kind, value)
        item = typing.get_args(kind)[0]
        return tuple(coerce(element, item, f"{where}[{index}]") for index, element in enumerate(value))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _wrong(where, kind, value)
        key_kind, value_kind = typing.get_args(kind)
        return {coerce(key, key_kind, where): coerce(item, value_kind, _path(where, key))
                for key, item in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, kind, value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(where, kind, value)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.match(value.strip()):
            return float(value)  # PyYAML reads 1e-4 (no dot) as a string
        raise _wrong(where, kind, value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, kind, value)
    raise TypeError(f"unsupported annotation {kind!r} at {where}")


def from_mapping(cls, raw, where: str = ""):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'the configuration'}: expected a mapping of keys to values (received {raw!r})")
    hints = typing.get_type_hints(cls)
    allowed = [field.name for field in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{_path(where, key)}: unknown key{hint}; allowed keys: {', '.join(allowed)}")
        values[key] = coerce(value, hints[key], _path(where, key))
    return cls(**values)


def _path(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def to_plain(value):
    """Dataclasses → dicts, tuples → lists (for YAML)."""
    if dataclasses.is_dataclass(value):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Files and overrides


def resolve_path(name: str) -> str:
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
    try:
        raw = yaml.safe_load(fs.read_text(path))
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {error}") from None
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


def load_config(name: str, overrides: Sequence[str] = ()) -> Config:
    """Read, override, convert and validate a configuration file (``name`` may be a bare file name)."""
    raw = apply_overrides(read_yaml(resolve_path(name)), overrides)
    config = from_mapping(Config, raw)
    validate(config)
    return config


def config_from_dict(raw: dict) -> Config:
    config = from_mapping(Config, raw)
    validate(config)
    return config


def dump_config(config: Config, header: str = "") -> str:
    """The resolved configuration as YAML (reads back to an equal :class:`Config`)."""
    text = yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=None)
    return (header.rstrip() + "\n" if header else "") + text


def validate(config: Config) -> None:
    """Cross-field checks; names come from the registries so a new entry is valid everywhere."""
    from training.validation import check_config

    check_config(config)
