"""The end of a run: last model, training curves, evaluation on the held-out split, a summary."""
from __future__ import annotations

import datetime
import json
from typing import Dict

import keras
import numpy as np

from common import fs
from common.trust import make_trust, save_trust
from data_prep.manifest import data_card
from training.callbacks import HeadPrefixedLogs, best_model_names
from training.data import eval_dataset
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


def set_trust(plan: RunPlan, run: RunDir, metrics: dict) -> str:
    """Calibration and the out-of-distribution threshold (:mod:`common.trust`), set on the validation
    split and saved beside each best model (``eval.test`` sets them again, with its report); the file
    written, or '' where there is no validation split or no ``embedding`` layer."""
    split, config = plan.config.data.val_split, plan.config
    if plan.distribution.replicas > 1 or not run.writer or not split or not plan.shards.examples(split):
        return ""  # several devices: eval.test sets them (the notebooks run it next), on one
    model = keras.models.load_model(run.join("model.keras"))  # compiled: its optimizer state loads quietly
    try:
        embedding = model.get_layer("embedding").output
    except ValueError:
        return ""
    both = keras.Model(model.inputs, list(model.outputs) + [embedding])
    names = list(model.output_names)
    fit = outputs_of(both, names, plan, config.data.train_split)
    val = outputs_of(both, names, plan, split)
    card = {**data_card(plan.shards.manifest), "model": config.training.model_name,
            "test_accuracy": {head: value["accuracy"] for head, value in metrics.get("heads", {}).items()},
            "set": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    trust = make_trust(fit["embedding"], {head: val[head] for head in plan.heads}, val["labels"], val["embedding"],
                       card, f"{split} ({len(val['embedding'])} images)")
    return [save_trust(trust, run.join(name)) for name in best_model_names(config)][0]


def outputs_of(model, names, plan: RunPlan, split: str) -> Dict[str, object]:
    """Probabilities per head (``names``: the model's outputs, then the embedding), embeddings and
    labels of every image of ``split``, in one pass without augmentation."""
    files, examples, _ = plan.process_shards(split)
    found: Dict[str, list] = {name: [] for name in names + ["embedding"]}
    labels: Dict[str, list] = {head: [] for head in plan.heads}
    for batch in eval_dataset(files, plan.pipeline, plan.local_batch, examples=examples):
        values = model.predict_on_batch(batch[0].numpy())
        for name, value in zip(names + ["embedding"], values):
            found[name].append(np.asarray(value, dtype=np.float32).reshape(len(value), -1))
        for head in labels:  # a single-head model's labels come as one tensor
            labels[head].append(np.asarray(batch[1][head] if isinstance(batch[1], dict) else batch[1]))
    result = {name: np.concatenate(parts) for name, parts in found.items()}
    result["labels"] = {head: np.concatenate(parts) for head, parts in labels.items()}
    return result


def print_run_summary(name: str, metrics: dict, out: str) -> None:
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
        if set_trust(plan, run, metrics):
            print(f"calibration and abstention set on {plan.config.data.val_split}: "
                  f"{best_model_names(plan.config)[0].rsplit('.', 1)[0]}.trust.json")
        run.write_state(state)
        print_run_summary(plan.config.name, metrics, run.path)
    return metrics
