"""``python -m tuning.hyperband --config baseline.yaml [--space report004] …``: hyperparameter search.

Hyperband (default), Bayesian optimisation or random search through keras-tuner, over a space
declared in YAML (:mod:`tuning.space`), with trials built and trained by the :mod:`training` functions
under the same distribution strategy as ``training.fit``. Running the same command again after an
interruption continues the search: completed trials are kept, a trial cut off mid-way runs again.
Writes ``trials.csv``, ``search.png`` and ``best.yaml`` (a complete training configuration).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from typing import Optional, Sequence

from common import fs
from common.cli import quiet_tensorflow, run_main, setup_logging
from common.errors import UserError, describe_choices
from training.config import load_config, to_plain
from training.metrics import reported_metrics

LOG = logging.getLogger("tuning.hyperband")
ALGORITHMS = ("hyperband", "bayesian", "random")
STATE = "search.json"


def check_options(args, heads, has_validation: bool) -> None:
    """Everything that can be wrong before any training: objective, budget, algorithm."""
    if args.algorithm not in ALGORITHMS:
        raise UserError("--algorithm: " + describe_choices("algorithm", args.algorithm, ALGORITHMS))
    metrics = reported_metrics(heads, has_validation)
    if args.objective not in metrics:
        raise UserError(f"--objective: the model does not report {args.objective!r}; it reports "
                        f"{', '.join(metrics)}")
    if args.algorithm == "hyperband":
        if args.factor < 2:
            raise UserError(f"--factor: Hyperband needs a reduction factor of at least 2 (received {args.factor})")
        if args.max_epochs < args.factor:
            raise UserError(f"--max-epochs: {args.max_epochs} is below the Hyperband minimum for --factor "
                            f"{args.factor}: it needs at least {args.factor} epochs for one round of successive "
                            "halving (with fewer, Hyperband is a random search)")
    elif args.max_trials < 1:
        raise UserError(f"--max-trials: expected 1 or more (received {args.max_trials})")
    if args.max_epochs < 1:
        raise UserError(f"--max-epochs: expected 1 or more (received {args.max_epochs})")


def fingerprint(args, config, space_text: str) -> dict:
    """What must match for a re-run to continue the same search."""
    return {"config": to_plain(config), "space": hashlib.sha256(space_text.encode()).hexdigest(),
            "algorithm": args.algorithm, "objective": args.objective, "max_epochs": args.max_epochs,
            "factor": args.factor if args.algorithm == "hyperband" else None,
            "max_trials": args.max_trials if args.algorithm != "hyperband" else None}


def check_resume(out: str, wanted: dict) -> None:
    path = fs.join(out, STATE)
    if not fs.exists(path):
        return
    recorded = json.loads(fs.read_text(path))
    changed = sorted(key for key in set(recorded) | set(wanted) if recorded.get(key) != wanted.get(key))
    if changed:
        raise UserError(f"--out {out} holds a search with different settings ({', '.join(changed)}); re-run "
                        "the same command to continue it, or choose another --out")
    LOG.info("continuing the search in %s", out)


def is_worker() -> bool:
    """A keras-tuner worker in distributed mode (the chief, alone, holds the oracle and the results)."""
    return bool(os.environ.get("KERASTUNER_ORACLE_IP")) and os.environ.get("KERASTUNER_TUNER_ID") != "chief"


def make_tuner(args, hypermodel, objective, strategy, out: str, seed: int):
    import keras_tuner

    common = dict(hypermodel=hypermodel, objective=objective, seed=seed, directory=fs.join(out, "tuner"),
                  project_name="search", overwrite=False, distribution_strategy=strategy,
                  max_consecutive_failed_trials=3)
    if args.algorithm == "hyperband":
        return keras_tuner.Hyperband(max_epochs=args.max_epochs, factor=args.factor, **common)
    if args.algorithm == "bayesian":
        return keras_tuner.BayesianOptimization(max_trials=args.max_trials, **common)
    return keras_tuner.RandomSearch(max_trials=args.max_trials, **common)


def search(args) -> Optional[dict]:
    """Run (or continue) the search described by the parsed command line; return its summary."""
    import keras_tuner

    from training import setup
    from training.callbacks import monitor_mode
    from training.strategy import choose_strategy, set_precision
    from tuning import space as spaces
    from tuning.hypermodel import CarHyperModel, SearchContext
    from tuning.results import write_results

    config = load_config(args.config, args.set)
    space = spaces.load_space(args.space)
    spaces.check_space(space, config)
    manifest_dir, manifest = setup.load_dataset(config)
    heads = setup.select_heads(manifest, config.data.heads)
    check_options(args, heads, setup.split_size(manifest, config.data.val_split) > 0)
    out = args.out or fs.join("runs", f"tune_{config.name}")
    state = fingerprint(args, config, fs.read_text(spaces.resolve(args.space)))
    check_resume(out, state)
    fs.makedirs(out)
    fs.write_text_atomic(fs.join(out, STATE), json.dumps(state, indent=1))

    set_precision(config.training.mixed_precision)
    choice = choose_strategy(config.training.strategy, config.training.tpu)
    context = SearchContext(choice.strategy, choice.replicas, choice.on_tpu or choice.replicas > 1, manifest_dir,
                            manifest, heads, args.max_epochs, config.training.verbose)
    direction = monitor_mode(args.objective)
    tuner = make_tuner(args, CarHyperModel(config, space, context),
                       keras_tuner.Objective(args.objective, direction), choice.strategy, out, args.seed
                       if args.seed is not None else config.training.seed)
    LOG.info("space %s: %s", space.name, "; ".join(spaces.describe(space)))
    tuner.search(epochs=args.max_epochs)
    if is_worker():
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} done; the chief writes trials.csv and best.yaml to {out}")
        return None
    summary = write_results(out, tuner, space, config, args.config, args.set, args.algorithm, args.objective,
                            direction)
    print_summary(out, summary, args.objective)
    return summary


def print_summary(out: str, summary: Optional[dict], objective: str) -> None:
    if summary is None:
        print(f"no trial finished; see {fs.join(out, 'tuner')}")
        return
    print(f"\n{summary['completed']} of {summary['trials']} trials completed; best trial {summary['best_trial']}: "
          f"{objective} = {summary['best_value']:.4g}")
    print("  " + ", ".join(f"{name}={value}" for name, value in summary["values"].items()))
    print(f"  trials: {fs.join(out, 'trials.csv')}, plot: {fs.join(out, 'search.png')}")
    print(f"  train it: python -m training.fit --config {fs.join(out, 'best.yaml')}")


def parse_args(argv: Optional[Sequence[str]]):
    parser = argparse.ArgumentParser(prog="python -m tuning.hyperband", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="base training config (bare names: configs/)")
    parser.add_argument("--space", default="report004", help="search space YAML (bare names: tuning/spaces/)")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs for the best trials (Hyperband budget)")
    parser.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor (report 004 used 5)")
    parser.add_argument("--objective", default="val_loss", help="val_loss or val_<head>_accuracy, …")
    parser.add_argument("--algorithm", default="hyperband", help="hyperband, bayesian or random")
    parser.add_argument("--max-trials", type=int, default=20, help="trials for bayesian/random")
    parser.add_argument("--seed", type=int, help="search seed (default: training.seed)")
    parser.add_argument("--out", help="search folder (default runs/tune_<config name>; gs:// works)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    setup_logging()
    search(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
