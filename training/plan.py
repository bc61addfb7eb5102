"""The run plan: what a configuration and a distribution imply, derived once, and the builders that
turn it into datasets and compiled models.

``training.fit``'s trainer, the tuner's trials, ``eval``, the notebooks, the benchmarks and the
tests all assemble a run here: nobody re-derives the global batch, the steps per epoch, the image
size or the pipeline. ``make_plan`` checks everything that can be checked before the first step
(names, ranges, heads, monitors, shards present, batch vs replicas).

::

    plan = make_plan(config)                       # validated, distributed, sized
    train, val = training_data(plan, first_epoch)  # tf.data, epoch by epoch
    with plan.distribution.scope():
        model = compile_model(new_model(plan), plan, stage)
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional, Tuple

import numpy as np

from common import backend, fs
from common.errors import UserError, describe_choices
from data_prep.integrity import require_shards
from data_prep.manifest import MANIFEST, load_manifest, shard_paths
from data_prep.prepare import ensure_shards
from models.backbones import BACKBONES
from models.build import build_model, set_trainable
from training import augment
from training.config import Config, StageConfig
from training.data import BALANCES, PipelineSpec, eval_dataset, train_dataset
from training.distribute import Distribution, choose_distribution, global_batch_size, set_precision
from training.losses import build_losses, one_hot_heads
from training.metrics import check_monitors, head_metrics
from training.optim import build_optimizer
from training.validation import check_config

LOG = logging.getLogger("training.plan")


@dataclasses.dataclass(frozen=True)
class Shards:
    """A built dataset: the folder holding ``manifest.json`` and the manifest."""

    folder: str
    manifest: dict

    def examples(self, split: Optional[str]) -> int:
        return int(self.manifest["splits"].get(split, {}).get("examples", 0)) if split else 0

    def counts(self, split: str, head: str) -> np.ndarray:
        return np.asarray(self.manifest["splits"][split]["class_counts"][head]["per_class"])

    def files(self, split: str) -> list:
        return shard_paths(self.folder, self.manifest, split)


@dataclasses.dataclass(frozen=True)
class Stage:
    """Epochs ``first`` … ``end - 1`` of a run, with their fine-tuning stage (``None``: no stages)."""

    index: int
    first: int
    end: int
    config: Optional[StageConfig]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    config: Config
    distribution: Distribution
    shards: Shards
    heads: Dict[str, int]  # head → classes, in output order
    image_size: int
    global_batch: int
    steps_per_epoch: int
    pipeline: PipelineSpec

    @property
    def has_validation(self) -> bool:
        return self.shards.examples(self.config.data.val_split) > 0

    @property
    def splits(self) -> Tuple[str, ...]:
        """The splits this run reads: training, validation, the held-out evaluation."""
        data, training = self.config.data, self.config.training
        return tuple(split for split in (data.train_split, data.val_split, training.evaluate_split) if split)

    @property
    def stages(self) -> Tuple[Stage, ...]:
        """Consecutive epoch windows covering the run, one per fine-tuning stage."""
        if not self.config.training.stages:
            return (Stage(0, 0, self.config.training.epochs, None),)
        windows, start = [], 0
        for index, stage in enumerate(self.config.training.stages):
            windows.append(Stage(index, start, start + stage.epochs, stage))
            start += stage.epochs
        return tuple(windows)

    @property
    def local_batch(self) -> int:
        """The batch each process feeds (the global batch on one host)."""
        return self.global_batch // self.distribution.processes

    @property
    def jit_compile(self) -> bool:
        """``training.jit_compile``, or by backend: on JAX (which otherwise runs op by op), not on
        TensorFlow (its graphs are compiled anyway; XLA is no faster on a CPU)."""
        chosen = self.config.training.jit_compile
        return self.distribution.backend == "jax" if chosen is None else chosen

    def process_shards(self, split: str) -> Tuple[list, int, int]:
        """``(files, examples, batches)`` this process reads of ``split``: every process its own
        shards (round robin), and the number of local batches the busiest process needs, which every
        process evaluates (they step together; the rest is padding)."""
        shards, processes = self.shards.manifest["splits"][split]["shards"], self.distribution.processes
        if len(shards) < processes:
            raise UserError(f"the {split} split has {len(shards)} shard(s) for {processes} processes: rebuild it "
                            f"with --num-shards {processes} or more")
        mine = shards[self.distribution.process::processes]
        counts = [sum(shard["examples"] for shard in shards[index::processes]) for index in range(processes)]
        files = [fs.join(self.shards.folder, shard["path"]) for shard in mine]
        return files, sum(shard["examples"] for shard in mine), max(-(-count // self.local_batch) for count in counts)

    def describe(self) -> dict:
        return {**self.distribution.describe(), "global_batch": self.global_batch, "jit_compile": self.jit_compile,
                "steps_per_epoch": self.steps_per_epoch, "image_size": self.image_size}


def make_plan(config: Config, distribution: Optional[Distribution] = None, shards: Optional[Shards] = None) -> RunPlan:
    """Validate ``config`` and derive everything a run needs (``distribution`` and ``shards``
    are chosen or loaded when not given; a search passes them once for all its trials)."""
    check_config(config)
    backend.choose(config.training.backend)  # refuses a backend other than the one Keras runs on
    shards = shards or load_shards(config)
    heads = select_heads(shards.manifest, config.data.heads)
    if not shards.examples(config.data.train_split):
        raise UserError(f"data.train_split: the manifest has no {config.data.train_split!r} examples "
                        f"(splits: {', '.join(shards.manifest['splits'])})")
    check_names(config, shards.manifest, heads)
    check_monitors(config, heads, shards.examples(config.data.val_split) > 0)
    distribution = distribution or choose_distribution(config.training.strategy, config.training.tpu,
                                                       config.training.multi_host)
    global_batch = global_batch_size(config.data.batch_size, distribution.replicas, config.data.global_batch_size)
    check_batch(config, global_batch, distribution.replicas, shards.examples(config.data.train_split))
    steps = config.training.steps_per_epoch or max(1, shards.examples(config.data.train_split) // global_batch)
    image_size = config.data.image_size or BACKBONES.get(config.model.backbone).default_size
    plan = RunPlan(config, distribution, shards, heads, image_size, global_batch, steps,
                   pipeline_spec(config, shards, heads, image_size))
    require_shards(shards.folder, shards.manifest, plan.splits)
    return plan


def check_batch(config: Config, global_batch: int, replicas: int, examples: int) -> None:
    """A global batch larger than the training split would be filled with repeats of it, one step an
    epoch (and a batch of 100,000 pictures exhausts the memory before the first step): refused, unless
    ``training.steps_per_epoch`` says how many such steps to take."""
    if global_batch <= examples or config.training.steps_per_epoch:
        return
    where = "data.global_batch_size" if config.data.global_batch_size else "data.batch_size"
    made = "" if config.data.global_batch_size else f" = {config.data.batch_size} × {replicas} replica(s)"
    raise UserError(f"{where}: the global batch ({global_batch}{made}) is larger than the {examples} "
                    f"{config.data.train_split} examples; choose at most {examples} (or set "
                    "training.steps_per_epoch to train on repeats of them deliberately)")


def check_names(config: Config, manifest: dict, heads: Dict[str, int]) -> None:
    """Every split and head a configuration names exists in the data (checked before anything is
    written: a misspelt split would skip the evaluation, a misspelt head weight would be ignored).
    The default validation and evaluation splits may be absent: then there is none."""
    splits = list(manifest["splits"])
    defaults = {field.name: field.default for field in dataclasses.fields(type(config.data))}
    for key, value, default in (("data.val_split", config.data.val_split, defaults["val_split"]),
                                ("training.evaluate_split", config.training.evaluate_split, "test")):
        if value and value not in splits and value != default:
            raise UserError(f"{key}: " + describe_choices("split", value, splits))
    named = [("loss.head_weights", head) for head in config.loss.head_weights]
    named += [("loss.per_head", head) for head in config.loss.per_head]
    if config.data.class_balance != "none":
        named.append(("data.balance_head", config.data.balance_head))
    for key, head in named:
        if head not in heads:
            default = " (the default for data.class_balance; set data.balance_head)" if (
                key == "data.balance_head" and head == defaults["balance_head"]) else ""
            raise UserError(f"{key}: " + describe_choices("head", head, heads) + default)


def load_shards(config: Config) -> Shards:
    """The shards of ``data.shards``; created first from ``data.prepare`` when absent (the demo)."""
    data = config.data
    if not fs.exists(fs.join(data.shards, MANIFEST)):
        if data.prepare is None:
            raise UserError(f"data.shards: no manifest.json in {data.shards!r}. Build the shards first, e.g. "
                            "python -m data_prep.build --dataset stanford_cars --root DATA --out "
                            f"{data.shards} (see docs/data.md)")
        prepare = data.prepare
        ensure_shards(data.shards, layout=prepare.synthetic_layout, split=prepare.split, max_side=prepare.max_side,
                      announce=True, makes=prepare.makes, models_per_make=prepare.models_per_make,
                      images_per_model=prepare.images_per_model, seed=prepare.seed)
    return Shards(data.shards, load_manifest(data.shards))


def select_heads(manifest: dict, wanted) -> Dict[str, int]:
    """``{head: classes}`` for the configured heads (all of the manifest's when none are listed)."""
    available = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
    unknown = [head for head in wanted if head not in available]
    if unknown:
        raise UserError(f"data.heads: {', '.join(unknown)} not in the manifest; it has {', '.join(available)}")
    return {head: available[head] for head in (wanted or available)}


def pipeline_spec(config: Config, shards: Shards, heads: Dict[str, int], image_size: int) -> PipelineSpec:
    data = config.data
    steps = augment.PRESETS.get(data.augment)

    def balance_counts() -> np.ndarray:  # asked for by the balances that need them
        if data.balance_head not in heads:
            raise UserError(f"data.balance_head: {data.balance_head!r} is not one of the heads ({', '.join(heads)})")
        return shards.counts(data.train_split, data.balance_head)

    balance = BALANCES.get(data.class_balance)(balance_counts, data.balance_head)
    pixels = BACKBONES.get(config.model.backbone).pixels if data.normalize_in == "pipeline" else None
    return PipelineSpec(
        heads=tuple(heads), num_classes=dict(heads), image_size=image_size,
        one_hot_heads=one_hot_heads(config.loss, heads), crop_to_bbox=data.crop_to_bbox,
        bbox_margin=data.bbox_margin, augment=steps if data.augment_on == "host" else (),
        crop=augment.crop_step(steps), pixels=pixels, **balance)


# --- builders -------------------------------------------------------------------------------------

def training_data(plan: RunPlan, first_epoch: int = 0):
    """``(training, validation or None)``: training epoch by epoch from ``first_epoch`` (a resumed run
    draws that epoch's order and augmentation); validation padded to whole batches when the
    distribution needs it."""
    data = plan.config.data
    files = plan.process_shards(data.train_split)[0]
    train = train_dataset(files, plan.pipeline, plan.local_batch,
                          plan.config.training.seed + plan.distribution.process,
                          examples_per_epoch=plan.steps_per_epoch * plan.local_batch, first_epoch=first_epoch,
                          shuffle_buffer=data.shuffle_buffer, deterministic=data.deterministic)
    return train, (evaluation_data(plan, data.val_split) if plan.has_validation else None)


def evaluation_data(plan: RunPlan, split: str):
    """One pass over ``split`` in a fixed order; padded with zero-weight copies when ``plan`` needs
    whole batches (every example still counts once; with several processes each reads its shards)."""
    files, examples, batches = plan.process_shards(split)
    return eval_dataset(files, plan.pipeline, plan.local_batch, examples=examples, pad=plan.distribution.pad,
                        batches=batches if plan.distribution.pad else None)


def padded_examples(plan: RunPlan, split: str) -> int:
    """How many examples (real and padding) an evaluation of ``split`` processes, all processes together."""
    return plan.process_shards(split)[2] * plan.global_batch if plan.distribution.pad else plan.shards.examples(split)


def new_model(plan: RunPlan):
    """A freshly initialised model (build it in ``plan.distribution.scope()``); what is trainable
    is the first fine-tuning stage's, if any."""
    config = plan.config
    set_precision(config.training.mixed_precision)
    device = augment.device_layers(augment.PRESETS.get(config.data.augment)) if config.data.augment_on == "device" \
        else None
    model_config = config.model
    if config.training.stages:
        first = config.training.stages[0]
        model_config = dataclasses.replace(model_config, trainable=first.trainable,
                                           unfreeze_blocks=first.unfreeze_blocks)
    return build_model(model_config, plan.heads, plan.image_size, device,
                       normalize=config.data.normalize_in == "model")


def apply_stage(model, plan: RunPlan, stage: Optional[StageConfig]) -> None:
    """Set what is trainable for a fine-tuning stage (report 003's frozen → last blocks → all)."""
    if stage is not None:
        set_trainable(model, stage.trainable, stage.unfreeze_blocks, plan.config.model.freeze_batchnorm,
                      BACKBONES.get(plan.config.model.backbone))


def compile_model(model, plan: RunPlan, stage: Optional[StageConfig] = None, epochs: Optional[int] = None):
    """Compile ``model`` for ``stage`` (its optimizer and rate override the config's); the schedule
    spans ``epochs`` (default: the whole run). Returns the model."""
    config = plan.config
    counts = {head: plan.shards.counts(config.data.train_split, head) for head in plan.heads}
    model.compile(
        optimizer=build_optimizer(config.optimizer, config.schedule, plan.global_batch, plan.steps_per_epoch,
                                  epochs or config.total_epochs, stage.optimizer if stage else None,
                                  stage.learning_rate if stage else None),
        loss=build_losses(config.loss, list(plan.heads), counts, config.model.output_activation == "linear"),
        loss_weights={head: config.loss.head_weights.get(head, 1.0) for head in plan.heads},
        # weighted: HeadAccuracy uses a weight only to skip zero-weight (padding) examples
        weighted_metrics={head: head_metrics(classes) for head, classes in plan.heads.items()},
        jit_compile=plan.jit_compile,
        steps_per_execution=config.training.steps_per_execution,
    )
    return model
