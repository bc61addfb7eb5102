"""``python -m eval.test --model PATH [--data SHARDS] [--split test] [--out DIR] [--tta] [--batch-size N]``.

Loads ``.keras``, ``.h5`` (e.g. ``focal_loss.h5``), a SavedModel or ``.tflite``; finds the manifest next
to the model (its run folder) or in ``--data``; predicts the split (optionally averaged with the
mirrored image) and writes ``metrics.json``, ``report.md``, per-class CSVs and figures.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np

from common import fs
from common.cli import command_parser, run_main
from common.errors import UserError
from eval.datasource import check_heads, class_names, find_data, model_to, output_folder, training_config
from eval.loading import MODEL_HELP, load_predictor
from eval.metrics import head_metrics, hierarchy_metrics
from eval.report import markdown_table, print_evaluation, save_json, write_predictions, write_report
from eval.run_data import check_split, predict_split
from eval.trust import (EMBEDDING, build_trust, calibration_report, heads_and_embedding, ood_figure, ood_report,
                        photo_embeddings, save_beside, split_outputs)


# what an evaluation report holds (a folder holding anything else is not one)
REPORT_FILES = ("report.md", "metrics.json", "predictions.csv", "per_class_*.csv", "figures")
OOD_COLUMNS = ("auroc", "fpr_at_95_tpr", "ood_rejected", "in_accepted", "threshold", "examples_in", "examples_out")


def default_out(model_path: str, split: str, tta: bool) -> str:
    folder = model_path if fs.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    stem = os.path.splitext(os.path.basename(os.path.normpath(model_path)))[0]
    return fs.join(folder, f"eval_{stem}_{split}" + ("_tta" if tta else ""))


def evaluate(model: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None,
             tta: bool = False, batch_size: int = 32, ood: Optional[str] = None) -> dict:
    """Evaluate ``model`` on ``split``; returns the metrics written to ``metrics.json``. A Keras model's
    temperatures and out-of-distribution threshold are set on the validation split and saved beside
    it; ``ood``: a folder of photos (or shards) outside the model's classes, to measure abstention."""
    predictor = load_predictor(model)
    source = find_data(model, data)
    heads = check_heads(predictor.heads, source.manifest)
    check_split(source.manifest, split)
    if ood and not fs.exists(ood):
        raise UserError(f"--ood: {ood!r} does not exist (expected a folder of photos, or of shards)")
    if ood and predictor.keras_model is None:
        raise UserError("--ood needs the .keras or .h5 model (its embedding layer gives the score); an export "
                        "keeps only the predictions")
    out = output_folder(out, default_out(model, split, tta), REPORT_FILES, "eval.test")
    both = None if tta else heads_and_embedding(predictor)  # embeddings of the split for its scores, same pass
    result = predict_split(predictor, source.require_shards(), source.manifest, split, batch_size, tta,
                           training_config(model), both)
    embeddings = result["probs"].pop(EMBEDDING, None)
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
    metrics.update(trust_metrics(predictor, source, model, split, batch_size, result, per_head, out, ood, embeddings))
    save_json(fs.join(out, "metrics.json"), metrics)
    return metrics


def trust_metrics(predictor, source, model: str, split: str, batch_size: int, result: dict, per_head: dict,
                  out: str, ood: Optional[str], embeddings: Optional[np.ndarray] = None) -> dict:
    """Calibration and abstention, set on the validation split and saved beside the model; the
    ``ood`` block when ``ood`` is given. Their sections are added to ``report.md``."""
    config = training_config(model)
    trust, why = build_trust(predictor, source, config, batch_size)
    if trust is None:
        print(f"calibration and abstention not set: {why}")
        return {"abstention": {"unavailable": why}}
    if embeddings is None:  # with --tta the split's probabilities are averaged: its embeddings are taken apart
        embeddings = split_outputs(predictor, source, split, batch_size, config)["outputs"][EMBEDDING]
    in_scores = trust.scores(embeddings)
    found = {"calibration": calibration_report(trust, result["probs"], result["labels"]),
             "abstention": {"score": trust.score, "k": trust.k, "threshold": trust.threshold,
                            "set_on": trust.card["threshold_set_on"], "in_accepted": float(np.mean(
                                in_scores <= trust.threshold)), "saved": save_beside(
                                trust, model, {head: value["accuracy"] for head, value in per_head.items()})}}
    lines = ["## Calibration", "", "One temperature per head, fitted on the validation split (Guo et al. 2017); "
             f"expected calibration error on {split} before and after:", "",
             markdown_table([{"head": head, **values} for head, values in found["calibration"].items()],
                            ("head", "temperature", "ece_before", "ece_after")), "",
             "## Abstention", "", f"Score: {trust.score} (k = {trust.k}); threshold {trust.threshold:.4f}, accepting "
             f"{trust.accept:.0%} of {trust.card['threshold_set_on']}; {found['abstention']['in_accepted']:.1%} of "
             f"{split} accepted.", ""]
    if ood:
        vectors, skipped = photo_embeddings(predictor, ood, batch_size, config)
        out_scores = trust.scores(vectors)
        found["ood"] = {**ood_report(trust, in_scores, out_scores), "path": ood, "skipped": len(skipped)}
        ood_figure(in_scores, out_scores, trust.threshold, fs.join(out, "figures", "ood_scores.png"))
        lines += ["## Out of distribution", "", f"{len(out_scores)} photos of `{ood}` against the {len(in_scores)} "
                  f"of {split}:", "", markdown_table([found["ood"]], OOD_COLUMNS), "",
                  "![scores](figures/ood_scores.png)", ""]
    path = fs.join(out, "report.md")
    fs.write_text_atomic(path, fs.read_text(path) + "\n" + "\n".join(lines))
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.test", __doc__)
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--data", help="shards folder with manifest.json (default: next to the model)")
    parser.add_argument("--split", default="test", help="the split evaluated (default: test)")
    parser.add_argument("--out", help="report folder (default: eval_<model>_<split> next to the model)")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ood", help="photos (or shards) outside the model's classes: measures abstention")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size: expected 1 or more (received {args.batch_size})")
    metrics = evaluate(args.model, args.data, args.split, args.out, args.tta, args.batch_size, args.ood)
    print_evaluation(metrics["title"], metrics, metrics["out"])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
