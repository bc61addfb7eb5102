"""Hyperparameter search with keras-tuner: Hyperband (default), Bayesian optimisation or random search.

The search is over a space declared in YAML (:mod:`tuning.space`); trials are run plans built,
fed and trained by the :mod:`training` builders under the same distribution as ``training.fit``.
Running the same search again after an interruption continues it: completed trials are kept, a
trial cut off mid-way runs again. Writes ``trials.csv``, ``search.png`` and ``best.yaml`` (a
complete training configuration). The command line is :mod:`tuning.hyperband`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Callable, Optional, Tuple

import keras_tuner

from common import fs
from common.errors import UserError
from common.registry import Registry
from training.callbacks import monitor_mode
from training.config import Config, read_config, to_plain
from training.distribute import set_precision
from training.metrics import reported_metrics
from training.plan import make_plan
from tuning import space as spaces
from tuning.hypermodel import CarHyperModel
from tuning.results import write_results

LOG = logging.getLogger("tuning.search")
STATE = "search.json"
PROJECT = "search"  # keras-tuner's project folder inside <out>/tuner
SEARCH_FILES = (STATE, "tuner", "trials.csv", "search.png", "best.yaml")  # what a search folder holds


def atomic_json_writes() -> bool:
    """keras-tuner writes ``oracle.json`` and each ``trial.json`` in place, so a search killed while
    it writes (a preempted session) leaves a file cut short that the next run cannot reload. Its one
    JSON writer is replaced by one that writes a temporary file and renames it. Whether it could be."""
    try:
        from keras_tuner.src import utils as tuner_utils
    except ImportError:  # pragma: no cover - a keras-tuner laid out otherwise: its own writer stays
        return False
    if not hasattr(tuner_utils, "save_json"):  # pragma: no cover
        return False

    def save_json(path, obj):
        text = json.dumps(obj)
        fs.write_text_atomic(str(path), text)
        return text

    tuner_utils.save_json = save_json
    return True


atomic_json_writes()


def damaged_files(project: str) -> list:
    """The JSON files of a keras-tuner project that do not parse (cut short by a kill)."""
    names = [fs.join(project, "oracle.json")] + [fs.join(project, folder, name)
                                                  for folder in (fs.listdir(project) if fs.isdir(project) else [])
                                                  if folder.startswith("trial_")
                                                  for name in ("trial.json", "build_config.json")]
    damaged = []
    for name in names:
        if fs.exists(name):
            try:
                json.loads(fs.read_text(name))
            except (ValueError, UnicodeDecodeError):
                damaged.append(name)
    return damaged


def make_tuner(options: "SearchOptions", common: dict, out: str):
    """The tuner, reloading a search already in ``out``; a file damaged by a kill is one line."""
    try:
        return ALGORITHMS.get(options.algorithm).make(options, common)
    except (ValueError, RuntimeError, KeyError):
        damaged = damaged_files(fs.join(out, "tuner", PROJECT))
        if not damaged:
            raise
        raise UserError(f"--out {out}: the search cannot be continued: {', '.join(damaged)} "
                        f"{'is' if len(damaged) == 1 else 'are'} damaged (cut short: the search was killed while "
                        "keras-tuner wrote it). Start the search again with another --out (or delete "
                        f"{fs.join(out, 'tuner')})") from None


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """What ``python -m tuning.hyperband`` takes (and the notebooks pass)."""

    config: str
    space: str = "report004"
    max_epochs: int = 10
    factor: int = 3
    objective: str = "val_loss"
    algorithm: str = "hyperband"
    max_trials: int = 20
    seed: Optional[int] = None
    out: Optional[str] = None
    overrides: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A keras-tuner tuner; ``budget`` names the options that size the search."""

    make: Callable
    budget: Tuple[str, ...]


ALGORITHMS: Registry[Algorithm] = Registry("algorithm", where="--algorithm")
ALGORITHMS.register("hyperband")(Algorithm(
    lambda options, common: keras_tuner.Hyperband(max_epochs=options.max_epochs, factor=options.factor, **common),
    ("max_epochs", "factor")))
ALGORITHMS.register("bayesian")(Algorithm(
    lambda options, common: keras_tuner.BayesianOptimization(max_trials=options.max_trials, **common),
    ("max_epochs", "max_trials")))
ALGORITHMS.register("random")(Algorithm(
    lambda options, common: keras_tuner.RandomSearch(max_trials=options.max_trials, **common),
    ("max_epochs", "max_trials")))


def check_options(options: SearchOptions, heads, has_validation: bool) -> None:
    """Everything that can be wrong before any training: objective, budget, algorithm."""
    algorithm = ALGORITHMS.get(options.algorithm)
    metrics = reported_metrics(heads, has_validation)
    if options.objective not in metrics:
        raise UserError(f"--objective: the model does not report {options.objective!r}; it reports "
                        f"{', '.join(metrics)}")
    if options.max_epochs < 1:
        raise UserError(f"--max-epochs: expected 1 or more (received {options.max_epochs})")
    if "factor" in algorithm.budget:
        if options.factor < 2:
            raise UserError(f"--factor: Hyperband needs a reduction factor of at least 2 (received {options.factor})")
        if options.max_epochs < options.factor:
            raise UserError(f"--max-epochs: {options.max_epochs} is below the Hyperband minimum for --factor "
                            f"{options.factor}: it needs at least {options.factor} epochs for one round of "
                            "successive halving (with fewer, Hyperband is a random search)")
    if "max_trials" in algorithm.budget and options.max_trials < 1:
        raise UserError(f"--max-trials: expected 1 or more (received {options.max_trials})")


def fingerprint(options: SearchOptions, config: Config, space_text: str) -> dict:
    """What must match for a re-run to continue the same search."""
    budget = ALGORITHMS.get(options.algorithm).budget
    return {"config": to_plain(config), "space": hashlib.sha256(space_text.encode()).hexdigest(),
            "algorithm": options.algorithm, "objective": options.objective, "max_epochs": options.max_epochs,
            "factor": options.factor if "factor" in budget else None,
            "max_trials": options.max_trials if "max_trials" in budget else None}


def check_resume(out: str, wanted: dict) -> None:
    path = fs.join(out, STATE)
    if not fs.exists(path):
        return
    try:
        recorded = json.loads(fs.read_text(path))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"--out {out}: {path} is damaged (not the JSON this command writes); choose another "
                        "--out, or delete the folder to start the search again") from None
    changed = sorted(key for key in set(recorded) | set(wanted) if recorded.get(key) != wanted.get(key))
    if changed:
        raise UserError(f"--out {out} holds a search with different settings ({', '.join(changed)}); re-run "
                        "the same command to continue it, or choose another --out")
    LOG.info("continuing the search in %s", out)


def is_worker() -> bool:
    """A keras-tuner worker in distributed mode (the chief, alone, holds the oracle and the results)."""
    return bool(os.environ.get("KERASTUNER_ORACLE_IP")) and os.environ.get("KERASTUNER_TUNER_ID") != "chief"


def search(options: SearchOptions) -> Optional[dict]:
    """Run (or continue) a search; return its summary (``None`` on a distributed-search worker)."""
    config = read_config(options.config, options.overrides)
    space = spaces.load_space(options.space)
    spaces.check_space(space, config)
    plan = make_plan(config)  # validates the base configuration; distribution and shards serve every trial
    check_options(options, plan.heads, plan.has_validation)
    out = options.out or fs.join("runs", f"tune_{config.name}")
    if fs.is_remote(out) and plan.distribution.backend != "tensorflow":
        raise UserError(f"--out {out}: keras-tuner writes through TensorFlow's file system (gs://) only on the "
                        "TensorFlow backend; on JAX search into a local folder and copy it to the bucket afterwards "
                        "(gsutil -m cp -r), or run the search with training.backend: tensorflow")
    fs.refuse_foreign(out, SEARCH_FILES, "--out", "tuning.hyperband")
    state = fingerprint(options, config, fs.read_text(spaces.resolve(options.space)))
    check_resume(out, state)
    fs.ensure_writable_folder(out, "--out")
    fs.write_text_atomic(fs.join(out, STATE), json.dumps(state, indent=1))
    set_precision(config.training.mixed_precision)
    hypermodel = CarHyperModel(config, space, plan.distribution, plan.shards, options.max_epochs,
                               config.training.verbose)
    direction = monitor_mode(options.objective)
    common = dict(hypermodel=hypermodel, objective=keras_tuner.Objective(options.objective, direction),
                  seed=config.training.seed if options.seed is None else options.seed,
                  directory=fs.join(out, "tuner"), project_name=PROJECT, overwrite=False,
                  distribution_strategy=plan.distribution.strategy, max_consecutive_failed_trials=3)
    tuner = make_tuner(options, common, out)
    LOG.info("space %s: %s", space.name, "; ".join(spaces.describe(space)))
    tuner.search(epochs=options.max_epochs)
    if is_worker():
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} done; the chief writes trials.csv and best.yaml to {out}")
        return None
    summary = write_results(out, tuner, space, config, options.config, list(options.overrides), options.algorithm,
                            options.objective, direction)
    print_search_summary(out, summary, options.objective)
    return summary


def print_search_summary(out: str, summary: Optional[dict], objective: str) -> None:
    if summary is None:
        print(f"no trial finished; see {fs.join(out, 'tuner')}")
        return
    print(f"\n{summary['completed']} of {summary['trials']} trials completed; best trial {summary['best_trial']}: "
          f"{objective} = {summary['best_value']:.4g}")
    print("  " + ", ".join(f"{name}={value}" for name, value in summary["values"].items()))
    print(f"  trials: {fs.join(out, 'trials.csv')}, plot: {fs.join(out, 'search.png')}")
    print(f"  train it: python -m training.fit --config {fs.join(out, 'best.yaml')}")
