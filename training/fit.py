"""``python -m training.fit --config baseline.yaml [--set key=value …] [--out runs/NAME]``.

Composes config → strategy → datasets → model → compile → callbacks → fit → save. Running the same
command again after an interruption resumes from the last completed epoch (model, optimizer,
schedule position, best metric, early-stopping/plateau counters and history intact).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional, Sequence

from common import fs
from common.cli import quiet_tensorflow, run_main, setup_logging
from common.errors import UserError
from training.config import Config, config_from_dict, dump_config, load_config, read_yaml

LOG = logging.getLogger("training.fit")
# May differ when a run is resumed (another machine, more epochs, the data moved to a bucket).
RESUME_MUTABLE = {("training", "strategy"), ("training", "tpu"), ("training", "steps_per_execution"),
                  ("training", "jit_compile"), ("training", "epochs"), ("training", "verbose"),
                  ("training", "evaluate_split"), ("data", "shards")}


def check_resumable(saved: Config, wanted: Config) -> None:
    from training.config import to_plain

    old, new = to_plain(saved), to_plain(wanted)
    changed = []
    for key, value in new.items():
        if isinstance(value, dict):
            changed += [f"{key}.{inner}" for inner, setting in value.items()
                        if (key, inner) not in RESUME_MUTABLE and old.get(key, {}).get(inner) != setting]
        elif key != "description" and old.get(key) != value:
            changed.append(key)
    if changed:
        raise UserError(f"the run folder holds a run with a different configuration ({', '.join(changed)}); "
                        "re-run with the same configuration to resume, or choose another --out")


def best_model_names(config) -> list:
    names = ["model.keras"]
    if config.training.model_name != "model.keras":
        names.append(config.training.model_name)
    if config.training.save_h5 and not any(name.endswith(".h5") for name in names):
        names.append("model.h5")
    return names


def make_callbacks(config, run, state, stage_index: int, heads):
    from training.callbacks import (EpochSummaries, HeadPrefixedLogs, RunCheckpoint, ResumableEarlyStopping,
                                    ResumableReduceLROnPlateau, StopOnDivergence, monitor_mode, restore)

    # modes are explicit: Keras' "auto" looks for a metric named like the monitor, and ours are per head
    resumable = []
    if config.training.early_stopping_patience:
        monitor = config.training.early_stopping_monitor
        resumable.append(ResumableEarlyStopping(monitor=monitor, patience=config.training.early_stopping_patience,
                                                mode=monitor_mode(monitor)))
    if config.schedule.name == "plateau":
        schedule = config.schedule
        resumable.append(ResumableReduceLROnPlateau(monitor=schedule.monitor, factor=schedule.factor,
                                                    patience=schedule.patience, cooldown=schedule.cooldown,
                                                    min_delta=schedule.min_delta, min_lr=schedule.min_lr,
                                                    mode=monitor_mode(schedule.monitor)))
    restore(resumable, state)
    board = EpochSummaries(run.join("logs"))
    checkpoint = RunCheckpoint(run, state, config.training.monitor, best_model_names(config), resumable, stage_index)
    prefix = [HeadPrefixedLogs(next(iter(heads)))] if len(heads) == 1 else []
    return prefix + [StopOnDivergence(state)] + resumable + [board, checkpoint]


def load_checkpoint(run, state: dict):
    """The last completed epoch's model (weights, optimizer, schedule position, random states)."""
    import keras

    from training.callbacks import restore_seed_generators

    model = keras.models.load_model(run.join(state["checkpoint"]))
    restore_seed_generators(model, state.get("seed_generators"))
    return model


def train(config: Config, run, state: dict, context) -> dict:
    """Run every remaining epoch, stage by stage; returns the final state."""
    import keras

    from training import setup

    total, start = config.total_epochs, state.get("epoch", 0)
    model = None
    for index, (first, end, stage) in enumerate(setup.stage_plan(config)):
        if end <= start or state.get("stopped_early"):
            continue
        with context.strategy.scope():
            if start > first:  # resume inside this stage: model, optimizer and schedule as saved
                model = load_checkpoint(run, state)
            else:
                if model is None:
                    model = (load_checkpoint(run, state) if start else
                             setup.new_model(config, context.heads, context.image_size))
                if stage is not None:
                    setup.apply_stage(model, config, stage)
                setup.compile_model(model, config, context.manifest, context.heads, context.global_batch,
                                    context.steps, total, stage.optimizer if stage else None,
                                    stage.learning_rate if stage else None)
        LOG.info("epochs %d–%d of %d%s", max(start, first) + 1, end, total,
                 f" (stage {index + 1}: {stage.trainable})" if stage else "")
        model.fit(context.train, validation_data=context.val, epochs=end, initial_epoch=max(start, first),
                  steps_per_epoch=context.steps, callbacks=make_callbacks(config, run, state, index, context.heads),
                  verbose=config.training.verbose, shuffle=False)  # the pipeline shuffles
        start = state.get("epoch", start)
        if state.get("stopped_early"):
            LOG.info("early stopping after epoch %d", state["epoch"])
    return state


class Context:
    """What ``train`` needs besides the config (built once per process)."""

    def __init__(self, config: Config, first_epoch: int = 0):
        from training import setup
        from data_prep.integrity import require_shards
        from training.metrics import check_monitors
        from training.strategy import choose_strategy, global_batch_size, set_precision

        set_precision(config.training.mixed_precision)
        self.choice = choose_strategy(config.training.strategy, config.training.tpu)
        self.strategy = self.choice.strategy
        self.manifest_dir, self.manifest = setup.load_dataset(config)
        self.heads = setup.select_heads(self.manifest, config.data.heads)
        self.splits = [split for split in (config.data.train_split, config.data.val_split,
                                           config.training.evaluate_split) if split]
        require_shards(self.manifest_dir, self.manifest, self.splits)
        check_monitors(config, self.heads, setup.split_size(self.manifest, config.data.val_split) > 0)
        self.image_size = setup.image_size_for(config)
        self.global_batch = global_batch_size(config.data.batch_size, self.choice.replicas,
                                              config.data.global_batch_size)
        self.spec = setup.pipeline_spec(config, self.manifest, self.heads, self.image_size)
        self.pad = self.choice.on_tpu or self.choice.replicas > 1
        examples = setup.split_size(self.manifest, config.data.train_split)
        self.steps = config.training.steps_per_epoch or max(1, examples // self.global_batch)
        self.train, self.val = setup.datasets(config, self.manifest_dir, self.manifest, self.spec,
                                              self.global_batch, self.pad, self.steps, first_epoch)
        heads = ", ".join(f"{head} ({classes})" for head, classes in self.heads.items())
        LOG.info("global batch %d (%d replica(s)); %d steps per epoch; %d px; heads %s", self.global_batch,
                 self.choice.replicas, self.steps, self.image_size, heads)


    def reading(self):
        """Damaged shards found while training or evaluating become one clear error."""
        from data_prep.integrity import reading_shards

        return reading_shards(self.manifest_dir, self.manifest, self.splits)


def start_run(config: Config, out: str):
    """Open (or resume) the run folder; returns ``(run, state)``."""
    from training.run import RunDir

    fs.ensure_writable_folder(out, "--out")
    run = RunDir(out)
    state = run.load_state()
    if state is not None and fs.exists(run.join("config.yaml")):
        check_resumable(config_from_dict(read_yaml(run.join("config.yaml"))), config)
        LOG.info("resuming %s after epoch %d of %d", out, state.get("epoch", 0), config.total_epochs)
    elif fs.isdir(out) and any(name not in ("logs", "checkpoints", "curves") for name in fs.listdir(out)) \
            and not fs.exists(run.join("config.yaml")):
        raise UserError(f"--out {out} exists and is not a run folder; choose another --out")
    run.prepare()
    for folder in (run.path, run.join("checkpoints")):  # leftovers of writes cut short (kill -9, full disk)
        fs.remove_temporaries(folder)
    fs.write_text_atomic(run.join("config.yaml"), dump_config(config, f"# resolved configuration of {config.name}"))
    return run, state or {}


def fit(config: Config, out: Optional[str] = None) -> dict:
    """Train (or resume) ``config`` into ``out`` (default ``runs/<name>``); returns the final metrics."""
    import keras

    from training.report import finish_run

    out = out or fs.join("runs", config.name)
    run, state = start_run(config, out)
    done = state.get("stopped_early") or state.get("epoch", 0) >= config.total_epochs
    if state.get("finished") and done:
        print(f"{out} is already complete ({state.get('epoch')} epochs); nothing to do")
        return json.loads(fs.read_text(run.join("metrics.json"))) if fs.exists(run.join("metrics.json")) else {}
    state["finished"] = False  # more epochs asked for than the finished run had
    keras.utils.set_random_seed(config.training.seed)
    context = Context(config, first_epoch=state.get("epoch", 0))
    fs.write_text_atomic(run.join("manifest.json"), json.dumps(context.manifest, indent=2))
    with context.reading():
        state = train(config, run, state, context)
        return finish_run(config, run, state, context)


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML file, or a bare name looked up in configs/")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.learning_rate=0.001 (repeatable)")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.config, args.set)
    fit(config, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
