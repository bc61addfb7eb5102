"""``python -m eval.test --model PATH [--data SHARDS] [--split test] [--out DIR] [--tta] [--batch-size N]``.

Loads ``.keras``, ``.h5`` (e.g. ``focal_loss.h5``), a SavedModel or ``.tflite``; finds the manifest next
to the model (its run folder) or in ``--data``; predicts the split (optionally averaged with the
mirrored image) and writes ``metrics.json``, ``report.md``, per-class CSVs and figures.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from common import fs
from common.cli import run_main
from common.errors import UserError
from eval.datasource import check_heads, class_names, find_data, model_to, output_folder, training_config
from eval.loading import MODEL_HELP, load_predictor
from eval.metrics import head_metrics, hierarchy_metrics
from eval.report import print_summary, save_json, write_predictions, write_report
from eval.run_data import check_split, predict_split


# what an evaluation report holds (a folder holding anything else is not one)
REPORT_FILES = ("report.md", "metrics.json", "predictions.csv", "per_class_*.csv", "figures")


def default_out(model_path: str, split: str, tta: bool) -> str:
    folder = model_path if fs.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    stem = os.path.splitext(os.path.basename(os.path.normpath(model_path)))[0]
    return fs.join(folder, f"eval_{stem}_{split}" + ("_tta" if tta else ""))


def evaluate(model: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None,
             tta: bool = False, batch_size: int = 32) -> dict:
    """Evaluate ``model`` on ``split``; returns the metrics written to ``metrics.json``."""
    predictor = load_predictor(model)
    source = find_data(model, data)
    heads = check_heads(predictor.heads, source.manifest)
    check_split(source.manifest, split)
    out = output_folder(out, default_out(model, split, tta), REPORT_FILES, "eval.test")
    result = predict_split(predictor, source.require_shards(), source.manifest, split, batch_size, tta,
                           training_config(model))
    names = class_names(source.manifest, heads)
    per_head = {head: head_metrics(result["probs"][head], result["labels"][head], names[head]) for head in heads}
    unlabelled = [head for head, value in per_head.items() if value is None]
    per_head = {head: value for head, value in per_head.items() if value is not None}
    if not per_head:
        raise UserError(f"--split: no image of {split!r} has a known label for {', '.join(heads)}")
    mappings = {head: model_to(source.manifest, head) for head in heads if model_to(source.manifest, head)}
    hierarchy = hierarchy_metrics(result["probs"], result["labels"], mappings)
    title = (f"{os.path.basename(os.path.normpath(model))} on {split} ({len(result['ids'])} images"
             f"{', mirrored-image TTA' if tta else ''})")
    metrics = write_report(out, title, per_head, hierarchy, names)
    write_predictions(fs.join(out, "predictions.csv"), result, names)
    metrics.update({"out": out, "model": model, "kind": predictor.kind, "data": source.shards, "split": split,
                    "examples": len(result["ids"]), "tta": tta, "title": title,
                    "unlabelled_heads": unlabelled})
    save_json(fs.join(out, "metrics.json"), metrics)
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--data", help="shards folder with manifest.json (default: next to the model)")
    parser.add_argument("--split", default="test", help="the split evaluated (default: test)")
    parser.add_argument("--out", help="report folder (default: eval_<model>_<split> next to the model)")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored image")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size: expected 1 or more (received {args.batch_size})")
    metrics = evaluate(args.model, args.data, args.split, args.out, args.tta, args.batch_size)
    print_summary(metrics["title"], metrics, metrics["out"])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
