"""Train (or resume) one run, top to bottom: config → plan → datasets → model → compile → fit → report.

Running the same configuration into the same folder after an interruption resumes from the last
completed epoch: model, optimizer, schedule position, random states, best metric, early-stopping
and plateau counters and history intact; each epoch's data are drawn from (seed, epoch), so the
resumed epochs train like an uninterrupted run's. The command line is :mod:`training.fit`.
"""
from __future__ import annotations

import contextlib
import json
import logging
from typing import Optional, Tuple

import keras

from common import fs
from common.errors import UserError
from common.lock import folder_lock
from data_prep.integrity import reading_shards
from data_prep.manifest import data_differences
from training.callbacks import best_model_names, restore_seed_generators, run_callbacks
from training.config import Config, changed_fields, config_from_dict, dump_config, read_yaml
from training.plan import RunPlan, apply_stage, compile_model, make_plan, new_model, training_data
from training.report import finish_run
from training.run import RunDir, RunState
from training.validation import canonical, check_config

LOG = logging.getLogger("training.trainer")
RUN_MARKER = ".training-run"  # written first into a run folder: the folder is a run's, its files the run's
RUN_LOCK = ".lock"  # held by the fit that writes the folder
# what --overwrite replaces (with the best model's names): a run's own files, nothing else in its folder
RUN_FILES = ("config.yaml", "manifest.json", "last.keras", "history.csv", "metrics.json", "checkpoints", "curves",
             "logs")


def fit(config: Config, out: Optional[str] = None, overwrite: bool = False) -> dict:
    """Train (or resume) ``config`` into ``out`` (default ``runs/<name>``); returns the final metrics.
    ``overwrite`` trains a run folder's run again from scratch (its files are replaced, nothing else)."""
    check_config(config)  # before anything is written
    out = out or fs.join("runs", config.name)
    run, state = open_run(config, out, overwrite)
    if state.finished and state.done(config.total_epochs):
        print(f"{out} is already complete ({state.epoch} epochs); nothing to do (more epochs: --set "
              "training.epochs=N; a new run: another --out; this one again from scratch: --overwrite)")
        return json.loads(fs.read_text(run.join("metrics.json"))) if fs.exists(run.join("metrics.json")) else {}
    keras.utils.set_random_seed(config.training.seed)
    plan = make_plan(config)  # chooses the distribution: on several hosts the first one writes the run folder
    writer = plan.distribution.process == 0
    with folder_lock(out, "training run", RUN_LOCK) if writer else contextlib.nullcontext():
        run, state = open_run(config, out, overwrite)  # again, now that no other fit can change it
        run.writer = writer
        if state.epoch:
            check_same_data(run, plan)
        state.finished = False  # more epochs asked for than the finished run had
        if run.writer:
            prepare_run(run, config, overwrite)
            fs.write_text_atomic(run.join("manifest.json"), json.dumps(plan.shards.manifest, indent=2))
        heads = ", ".join(f"{head} ({classes})" for head, classes in plan.heads.items())
        LOG.info("global batch %d (%d replica(s)); %d steps per epoch; %d px; heads %s", plan.global_batch,
                 plan.distribution.replicas, plan.steps_per_epoch, plan.image_size, heads)
        with reading_shards(plan.shards.folder, plan.shards.manifest, plan.splits):
            state = train(plan, run, state)
            plan.distribution.wait_for_others("trained")
            return finish_run(plan, run, state)


def check_same_data(run: RunDir, plan: RunPlan) -> None:
    """A resumed run trains on the data it started with (the shards may have moved): the same heads,
    classes and records of every split; else one line, before anything of the run is replaced."""
    if not fs.exists(run.join("manifest.json")):
        return
    differences = data_differences(json.loads(fs.read_text(run.join("manifest.json"))), plan.shards.manifest)
    if differences:
        raise UserError(f"resuming {run.path} on other data: {'; '.join(differences)} (data.shards "
                        f"{plan.shards.folder}); resume on the shards this run started with, or train the new "
                        "data into another --out")


def train(plan: RunPlan, run: RunDir, state: RunState) -> RunState:
    """Run every remaining epoch, stage by stage; returns the final state."""
    config, model = plan.config, None
    for stage in plan.stages:
        start = state.epoch
        if stage.end <= start or state.stopped_early:
            continue
        with plan.distribution.scope():
            if start > stage.first:  # resume inside this stage: model, optimizer and schedule as saved
                model = load_checkpoint(run, state)
            else:
                if model is None:
                    model = load_checkpoint(run, state) if start else new_model(plan)
                apply_stage(model, plan, stage.config)
                compile_model(model, plan, stage.config)
        first = max(start, stage.first)
        train_data, val_data = training_data(plan, first_epoch=first)
        LOG.info("epochs %d–%d of %d%s", first + 1, stage.end, config.total_epochs,
                 f" (stage {stage.index + 1}: {stage.config.trainable})" if stage.config else "")
        model.fit(train_data, validation_data=val_data, epochs=stage.end, initial_epoch=first,
                  steps_per_epoch=plan.steps_per_epoch, callbacks=run_callbacks(config, run, state, stage.index,
                                                                                 plan.heads),
                  verbose=0, shuffle=False)  # the pipeline shuffles; training.console prints the epochs
        if state.stopped_early:
            LOG.info("early stopping after epoch %d", state.epoch)
    return state


def load_checkpoint(run: RunDir, state: RunState):
    """The last completed epoch's model (weights, optimizer, schedule position, random states)."""
    model = keras.models.load_model(run.join(state.checkpoint))
    restore_seed_generators(model, state.seed_generators)
    return model


def check_resumable(saved: Config, wanted: Config) -> None:
    """A run folder continues only the configuration it was started with (fields marked
    resume-mutable, such as the strategy or the number of epochs, may differ)."""
    changed = changed_fields(canonical(saved), canonical(wanted))
    if changed:
        raise UserError(f"the run folder holds a run with a different configuration ({', '.join(changed)}); "
                        "re-run with the same configuration to resume, or choose another --out")


def open_run(config: Config, out: str, overwrite: bool = False) -> Tuple[RunDir, RunState]:
    """The run folder and its state (an empty state for a new run, or with ``overwrite``), before any
    work: ``--out`` must be writable and hold nothing but a run of training.fit, and a run this
    configuration's; a run whose checkpoints are gone is not silently trained again."""
    fs.ensure_writable_folder(out, "--out")
    run = RunDir(out)
    names = sorted(name for name in fs.listdir(out) if name != RUN_LOCK)
    legacy = RUN_MARKER not in names and "config.yaml" in names and fs.exists(run.state_path)  # runs made before
    if names and RUN_MARKER not in names and not legacy:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise UserError(f"--out {out} holds files that training.fit did not write ({shown}); choose another --out")
    state = run.load_state()
    if overwrite:
        return run, RunState()
    if state is None and any(fs.exists(run.join(name)) for name in ("history.csv", "metrics.json")
                             + tuple(best_model_names(config))):
        raise UserError(f"--out {out} holds a run whose checkpoints are gone (checkpoints/state.json), so it cannot "
                        "be resumed; pass --overwrite to train it again from scratch (its model, history and metrics "
                        "are replaced), or choose another --out")
    if state is not None and fs.exists(run.join("config.yaml")):
        check_resumable(config_from_dict(read_yaml(run.join("config.yaml"))), config)
        LOG.info("resuming %s after epoch %d of %d", out, state.epoch, config.total_epochs)
    return run, state or RunState()


def prepare_run(run: RunDir, config: Config, overwrite: bool = False) -> None:
    """Mark the folder as this run's (first), remove an earlier run's files when overwriting, then the
    folders, no leftovers of writes cut short (kill -9, full disk), the resolved configuration."""
    fs.write_text_atomic(run.join(RUN_MARKER), json.dumps({"run": config.name, "written_by": "training.fit"}) + "\n")
    if overwrite:
        for name in RUN_FILES + tuple(best_model_names(config)):
            if fs.isdir(run.join(name)):
                fs.remove_tree(run.join(name))
            elif fs.exists(run.join(name)):
                fs.remove(run.join(name))
    run.prepare()
    for folder in (run.path, run.join("checkpoints")):
        fs.remove_temporaries(folder)
    fs.write_text_atomic(run.join("config.yaml"), dump_config(config, f"# resolved configuration of {config.name}"))
