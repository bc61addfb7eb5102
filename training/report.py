"""The end of a run: last model, training curves, evaluation on the held-out split, a summary."""
from __future__ import annotations

import json
from typing import Dict

from common import fs


def evaluate_best(config, run, context) -> Dict[str, dict]:
    """Per-head accuracy (and top-5) of the best model on ``training.evaluate_split``."""
    import keras

    from training import setup
    from training.data import eval_dataset, padding_factor, split_files

    split = config.training.evaluate_split
    if not split or setup.split_size(context.manifest, split) == 0:
        return {}
    with context.strategy.scope():
        model = keras.models.load_model(run.join("model.keras"))
    examples = setup.split_size(context.manifest, split)
    dataset = eval_dataset(split_files(context.manifest_dir, context.manifest, split), context.spec,
                           context.global_batch, examples=examples, pad=context.pad)
    values = model.evaluate(dataset, return_dict=True, verbose=0)
    if context.pad:
        factor = padding_factor(examples, context.global_batch)
        values = {key: value * factor if key.endswith("loss") else value for key, value in values.items()}
    if len(context.heads) == 1:  # Keras drops the output name for single-output models
        from training.callbacks import HeadPrefixedLogs

        HeadPrefixedLogs(next(iter(context.heads))).rename(values)
    results = {}
    for head, classes in context.heads.items():
        counts = context.manifest["splits"][split]["class_counts"][head]
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


def print_summary(config, metrics: dict, out: str) -> None:
    if "heads" not in metrics:
        print(f"done: {out} (no held-out split evaluated)")
        return
    print(f"\n{config.name}: {metrics['split']} split, best model {fs.join(out, 'model.keras')}")
    print(f"  {'head':<10} {'classes':>7} {'accuracy':>9} {'top-5':>7} {'chance':>7} {'majority':>9}")
    for head, entry in metrics["heads"].items():
        top5 = f"{entry['top5']:.3f}" if entry["top5"] is not None else "-"
        majority = f"{entry['majority']:.3f}" if entry["majority"] is not None else "-"
        print(f"  {head:<10} {entry['classes']:>7} {entry['accuracy']:>9.3f} {top5:>7} {entry['chance']:>7.3f} "
              f"{majority:>9}")


def finish_run(config, run, state: dict, context) -> dict:
    from training.plots import plot_curves
    from training.run import copy_atomic

    copy_atomic(run.join(state["checkpoint"]), run.join("last.keras"))  # the last epoch's checkpoint
    plot_curves(state.get("history", []), list(context.heads), run.join("curves"))
    metrics = evaluate_best(config, run, context)
    metrics["epochs"] = state.get("epoch")
    metrics["best"] = state.get("best")
    metrics["strategy"] = {"kind": context.choice.kind, "replicas": context.choice.replicas,
                           "reason": context.choice.reason, "global_batch": context.global_batch}
    fs.write_text_atomic(run.join("metrics.json"), json.dumps(metrics, indent=2))
    state["finished"] = True
    run.write_state(state)
    print_summary(config, metrics, run.path)
    return metrics
