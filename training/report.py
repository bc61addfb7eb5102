"""The end of a run: last model, training curves, evaluation on the held-out split, a summary."""
from __future__ import annotations

import json
from typing import Dict

import keras

from common import fs
from training.callbacks import HeadPrefixedLogs
from training.plan import RunPlan, evaluation_data, padded_examples
from training.plots import plot_curves
from training.run import RunDir, RunState, copy_atomic


def evaluate_best(plan: RunPlan, run: RunDir) -> Dict[str, dict]:
    """Per-head accuracy (and top-5) of the best model on ``training.evaluate_split``."""
    split = plan.config.training.evaluate_split
    if not split or not plan.shards.examples(split):
        return {}
    with plan.distribution.scope():
        model = keras.models.load_model(run.join("model.keras"))
    values = model.evaluate(evaluation_data(plan, split), return_dict=True, verbose=0)
    factor = padded_examples(plan, split) / plan.shards.examples(split)  # Keras' means count the padding
    values = {key: value * factor if key.endswith("loss") else value for key, value in values.items()}
    if len(plan.heads) == 1:  # Keras drops the output name for single-output models
        HeadPrefixedLogs(next(iter(plan.heads))).rename(values)
    results = {}
    for head, classes in plan.heads.items():
        counts = plan.shards.manifest["splits"][split]["class_counts"][head]
        known = sum(counts["per_class"])
        results[head] = {
            "classes": classes,
            "accuracy": float(values[f"{head}_accuracy"]),
            "top5": float(values[f"{head}_top5"]) if f"{head}_top5" in values else None,
            "loss": float(values.get(f"{head}_loss", float("nan"))),
            "chance": 1.0 / classes,
            "majority": max(counts["per_class"]) / known if known else None,
            "examples": known,
        }
    return {"split": split, "heads": results, "loss": float(values.get("loss", float("nan")))}


def print_summary(name: str, metrics: dict, out: str) -> None:
    if "heads" not in metrics:
        print(f"done: {out} (no held-out split evaluated)")
        return
    print(f"\n{name}: {metrics['split']} split, best model {fs.join(out, 'model.keras')}")
    print(f"  {'head':<10} {'classes':>7} {'accuracy':>9} {'top-5':>7} {'chance':>7} {'majority':>9}")
    for head, entry in metrics["heads"].items():
        top5 = f"{entry['top5']:.3f}" if entry["top5"] is not None else "-"
        majority = f"{entry['majority']:.3f}" if entry["majority"] is not None else "-"
        print(f"  {head:<10} {entry['classes']:>7} {entry['accuracy']:>9.3f} {top5:>7} {entry['chance']:>7.3f} "
              f"{majority:>9}")


def finish_run(plan: RunPlan, run: RunDir, state: RunState) -> dict:
    """The last model, the curves, ``metrics.json`` on the held-out split; marks the run finished (every
    host evaluates — they step together — and the writer writes)."""
    metrics = evaluate_best(plan, run)
    metrics["epochs"] = state.epoch
    metrics["best"] = state.best.__dict__ if state.best else None
    metrics["strategy"] = plan.describe()
    state.finished = True
    if run.writer:
        copy_atomic(run.join(state.checkpoint), run.join("last.keras"))  # the last epoch's checkpoint
        plot_curves(state.history, list(plan.heads), run.join("curves"))
        fs.write_text_atomic(run.join("metrics.json"), json.dumps(metrics, indent=2))
        run.write_state(state)
        print_summary(plan.config.name, metrics, run.path)
    return metrics
