"""``python -m eval.curves RUN_DIR [RUN_DIR …] [--out DIR]``: training curves from ``history.csv``.

One run: its per-head accuracy and loss curves (train and validation) are redrawn into
``RUN_DIR/curves`` (or ``--out``). Several runs: their validation curves are overlaid per head, like
report 004's figures 51–54, into ``--out`` (default ``curves_comparison``).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Optional, Sequence

from common import fs
from common.cli import command_parser, run_main
from common.errors import UserError
from eval.compare import config_name
from eval.datasource import output_folder
from eval.figures import pyplot, save_figure
from training.plots import plot_curves, read_history

METRIC_COLUMN = re.compile(r"^(?:val_)?(.+)_(accuracy|loss)$")


CURVE_FILES = ("*.png",)  # what eval.curves writes into its folder


def read_run(folder: str) -> List[dict]:
    path = fs.join(folder, "history.csv") if fs.isdir(folder) else folder
    if not fs.exists(path):
        raise UserError(f"{folder}: no history.csv (expected a run folder written by python -m training.fit)")
    try:
        rows = read_history(path)
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: not a readable history ({error})") from None
    if not rows or any("epoch" not in row for row in rows):
        raise UserError(f"{path}: no epochs recorded yet (expected a header with 'epoch' and one row per epoch)")
    return rows


def heads_of(rows: Sequence[dict]) -> List[str]:
    """Head names from columns such as ``val_model_accuracy`` (``loss`` alone is the total)."""
    found = (METRIC_COLUMN.match(key) for row in rows for key in row if key != "val_loss")
    return list(dict.fromkeys(match.group(1) for match in found if match))


def run_label(folder: str) -> str:
    return config_name(folder) or os.path.basename(os.path.normpath(folder))


def overlay(histories: Dict[str, List[dict]], out: str) -> List[str]:
    """Per head, validation accuracy and loss of every run on the same axes."""
    plt = pyplot()
    written = []
    heads = list(dict.fromkeys(head for rows in histories.values() for head in heads_of(rows)))
    for head in heads:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for axis, metric in zip(axes, ("accuracy", "loss")):
            for label, rows in histories.items():
                key = f"val_{head}_{metric}"
                if any(key in row for row in rows):
                    axis.plot([row["epoch"] for row in rows], [row.get(key, float("nan")) for row in rows], label=label)
            axis.set_title(f"{head}: validation {metric}")
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            if axis.get_lines():
                axis.legend(fontsize=8)
        figure.tight_layout()
        written.append(fs.join(out, f"{head}.png"))
        save_figure(figure, written[-1])
    return written


def draw(runs: Sequence[str], out: Optional[str] = None) -> List[str]:
    histories = {}
    for folder in runs:
        label = run_label(folder)
        while label in histories:
            label += "'"
        histories[label] = read_run(folder)
    if len(runs) == 1:
        rows = next(iter(histories.values()))
        return plot_curves(rows, heads_of(rows), output_folder(out, fs.join(runs[0], "curves"), CURVE_FILES, "eval.curves"))
    return overlay(histories, output_folder(out, "curves_comparison", CURVE_FILES, "eval.curves"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.curves", __doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in draw(args.runs, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
