"""Train (or resume) one run, top to bottom: config → plan → datasets → model → compile → fit → report.

Running the same configuration into the same folder after an interruption resumes from the last
completed epoch: model, optimizer, schedule position, random states, best metric, early-stopping
and plateau counters and history intact; each epoch's data are drawn from (seed, epoch), so the
resumed epochs train like an uninterrupted run's. The command line is :mod:`training.fit`.
"""
from __future__ import annotations

import json
import logging
from typing import Optional, Tuple

import keras

from common import fs
from common.errors import UserError
from data_prep.integrity import reading_shards
from training.callbacks import restore_seed_generators, run_callbacks
from training.config import Config, changed_fields, config_from_dict, dump_config, read_yaml
from training.plan import RunPlan, apply_stage, compile_model, make_plan, new_model, training_data
from training.report import finish_run
from training.run import RunDir, RunState
from training.validation import canonical, check_config

LOG = logging.getLogger("training.trainer")


def fit(config: Config, out: Optional[str] = None) -> dict:
    """Train (or resume) ``config`` into ``out`` (default ``runs/<name>``); returns the final metrics."""
    check_config(config)  # before anything is written
    out = out or fs.join("runs", config.name)
    run, state = open_run(config, out)
    if state.finished and state.done(config.total_epochs):
        print(f"{out} is already complete ({state.epoch} epochs); nothing to do")
        return json.loads(fs.read_text(run.join("metrics.json"))) if fs.exists(run.join("metrics.json")) else {}
    state.finished = False  # more epochs asked for than the finished run had
    keras.utils.set_random_seed(config.training.seed)
    plan = make_plan(config)  # chooses the distribution: on several hosts the first one writes the run folder
    run.writer = plan.distribution.process == 0
    if run.writer:
        prepare_run(run, config)
    heads = ", ".join(f"{head} ({classes})" for head, classes in plan.heads.items())
    LOG.info("global batch %d (%d replica(s)); %d steps per epoch; %d px; heads %s", plan.global_batch,
             plan.distribution.replicas, plan.steps_per_epoch, plan.image_size, heads)
    if run.writer:
        fs.write_text_atomic(run.join("manifest.json"), json.dumps(plan.shards.manifest, indent=2))
    with reading_shards(plan.shards.folder, plan.shards.manifest, plan.splits):
        state = train(plan, run, state)
        plan.distribution.wait_for_others("trained")
        return finish_run(plan, run, state)


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
                  verbose=config.training.verbose, shuffle=False)  # the pipeline shuffles
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


def open_run(config: Config, out: str) -> Tuple[RunDir, RunState]:
    """The run folder and its state (an empty state for a new run), before any work: ``--out`` must be
    writable, and a folder holding a run must hold this configuration's."""
    fs.ensure_writable_folder(out, "--out")
    run = RunDir(out)
    state = run.load_state()
    if state is not None and fs.exists(run.join("config.yaml")):
        check_resumable(config_from_dict(read_yaml(run.join("config.yaml"))), config)
        LOG.info("resuming %s after epoch %d of %d", out, state.epoch, config.total_epochs)
    elif fs.isdir(out) and any(name not in ("logs", "checkpoints", "curves") for name in fs.listdir(out)) \
            and not fs.exists(run.join("config.yaml")):
        raise UserError(f"--out {out} exists and is not a run folder; choose another --out")
    return run, state or RunState()


def prepare_run(run: RunDir, config: Config) -> None:
    """The folders, no leftovers of writes cut short (kill -9, full disk), the resolved configuration."""
    run.prepare()
    for folder in (run.path, run.join("checkpoints")):
        fs.remove_temporaries(folder)
    fs.write_text_atomic(run.join("config.yaml"), dump_config(config, f"# resolved configuration of {config.name}"))
