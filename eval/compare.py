"""``python -m eval.compare RUN_OR_REPORT … [--metrics accuracy,loss] [--published] [--format table]``.

One table across models, like report 004's comparison of its baseline, optimised and focal-loss
models. Each argument is a training run folder (its ``metrics.json``: the best checkpoint on the
test split), an ``eval.test`` or ``eval.retrieval`` report folder, or such a ``metrics.json``.
``--published`` adds, under each run that reproduces a report, the numbers the report published.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import pandas as pd

from common import fs
from common.cli import command_parser, run_main
from common.errors import UserError, describe_choices
from eval.datasource import parent
from eval.published import PUBLISHED
from training.config import read_yaml

METRICS = {
    "accuracy": ("accuracy",), "top5": ("top5",), "loss": ("loss",), "ece": ("calibration", "ece"),
    "macro_precision": ("macro", "precision"), "macro_recall": ("macro", "recall"), "macro_f1": ("macro", "f1"),
    "weighted_precision": ("weighted", "precision"), "weighted_recall": ("weighted", "recall"),
    "weighted_f1": ("weighted", "f1"),
}
FORMATS = ("table", "markdown", "csv")


def _metrics_file(path: str) -> str:
    candidate = fs.join(path, "metrics.json") if fs.isdir(path) else path
    if not fs.exists(candidate):
        raise UserError(f"{path}: no metrics.json (expected a training run folder, an eval.test or eval.retrieval "
                        "report folder, or a metrics.json file)")
    return candidate


def config_name(folder: str) -> Optional[str]:
    path = fs.join(folder, "config.yaml")
    if fs.exists(path):
        try:
            name = read_yaml(path).get("name")
        except UserError:
            return None
        return str(name) if name else None
    return None


def _model_name(model: str) -> str:
    """The run's config name for a model inside a run (or export) folder, else the file's stem."""
    folder = model.rstrip("/") if fs.isdir(model) else parent(model)
    for candidate in (folder, parent(folder)):
        name = config_name(candidate)
        if name:
            return name
    return os.path.splitext(os.path.basename(os.path.normpath(model)))[0]


def read_row(path: str) -> dict:
    """One table row from a run or report: ``{"name", "key", "split", "loss", "heads", "source"}``."""
    metrics_path = _metrics_file(path)
    try:
        metrics = json.loads(fs.read_text(metrics_path))
        heads = metrics["heads"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{metrics_path}: not a metrics file of this project ({error})") from None
    folder = os.path.dirname(metrics_path) if not fs.is_remote(metrics_path) else metrics_path.rsplit("/", 1)[0]
    if "model" in metrics:  # a report of eval.test or eval.retrieval
        kind = "eval.retrieval" if metrics.get("retrieval") else "eval.test"
        key = _model_name(metrics["model"]) + (" kNN" if metrics.get("retrieval") else "")
        name = key + (" TTA" if metrics.get("tta") else "")
    else:  # a training run
        kind, key = "training", config_name(folder) or os.path.basename(os.path.normpath(folder))
        name = key
    return {"name": name, "key": key, "from": kind, "split": metrics.get("split", "?"), "loss": metrics.get("loss"),
            "heads": heads, "source": path}


def published_row(key: str) -> Optional[dict]:
    entry = PUBLISHED.get(key)
    if entry is None:
        return None
    return {"name": key, "key": key, "from": entry["source"], "split": entry["split"], "loss": entry.get("loss"),
            "heads": entry["heads"], "source": entry["source"]}


def value(row: dict, head: str, metric: str):
    item = row["heads"].get(head)
    for part in METRICS[metric]:
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item if isinstance(item, (int, float)) else None


def table(rows: List[dict], metrics: Sequence[str], heads: Optional[Sequence[str]] = None) -> Dict[str, list]:
    """Columns: model, where the numbers come from, split, overall loss (when any row has it), then
    ``<head> <metric>``."""
    heads = list(heads or dict.fromkeys(head for row in rows for head in row["heads"]))
    columns = {"model": [row["name"] for row in rows], "from": [row["from"] for row in rows],
               "split": [row["split"] for row in rows]}
    if "loss" in metrics and any(row["loss"] is not None for row in rows):
        columns["loss"] = [row["loss"] for row in rows]
    for metric in metrics:
        for head in heads:
            cells = [value(row, head, metric) for row in rows]
            if any(cell is not None for cell in cells):
                columns[f"{head} {metric}"] = cells
    return columns


def render(columns: Dict[str, list], style: str) -> str:
    def cell(item):
        return f"{item:.4f}" if isinstance(item, float) else "—" if item is None else str(item)

    names = list(columns)
    rows = [[cell(item) for item in values] for values in zip(*columns.values())]
    if style == "csv":
        return pd.DataFrame(columns).to_csv(index=False).rstrip("\n")
    if style == "markdown":
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(names)]
    lines = ["  ".join(name.ljust(width) if i < 3 else name.rjust(width)
                       for i, (name, width) in enumerate(zip(names, widths)))]
    lines += ["  ".join(text.ljust(width) if i < 3 else text.rjust(width)
                        for i, (text, width) in enumerate(zip(row, widths))) for row in rows]
    return "\n".join(lines)


def parse_metrics(text: str) -> List[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    if not chosen:
        raise UserError(f"--metrics: nothing given; expected a comma-separated list of {', '.join(METRICS)}")
    for item in chosen:
        if item not in METRICS:
            raise UserError("--metrics: " + describe_choices("metric", item, METRICS))
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.compare", __doc__)
    parser.add_argument("sources", nargs="+", metavar="RUN_OR_REPORT")
    parser.add_argument("--metrics", default="accuracy,loss", help=f"comma-separated: {', '.join(METRICS)}")
    parser.add_argument("--heads", help="comma-separated heads (default: every head found)")
    parser.add_argument("--published", action="store_true", help="add the reports' published numbers")
    parser.add_argument("--format", choices=FORMATS, default="table")
    args = parser.parse_args(argv)
    metrics = parse_metrics(args.metrics)
    rows, unpublished = [], []
    for source in args.sources:
        rows.append(read_row(source))
        reference = published_row(rows[-1]["key"]) if args.published else None
        if args.published and reference is None:
            unpublished.append(rows[-1]["key"])
        if reference and (reference["name"], reference["from"]) not in [(row["name"], row["from"]) for row in rows]:
            rows.append(reference)
    heads = [head.strip() for head in args.heads.split(",")] if args.heads else None
    print(render(table(rows, metrics, heads), args.format))
    if unpublished:
        known = ", ".join(sorted(key for key in PUBLISHED if " " not in key))
        print(f"no published numbers for: {', '.join(dict.fromkeys(unpublished))} "
              f"(configs with published numbers: {known})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
