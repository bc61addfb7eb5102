"""Training curves per head from ``history.csv``: accuracy and loss, train and validation."""
from __future__ import annotations

import csv
import io
from typing import Dict, List, Sequence

from common import fs
from common.plotting import pyplot, save_figure


def read_history(path: str) -> List[Dict[str, float]]:
    rows = list(csv.DictReader(io.StringIO(fs.read_text(path))))
    return [{key: float(value) for key, value in row.items() if value not in ("", None)} for row in rows]


def plot_curves(rows: Sequence[dict], heads: Sequence[str], folder: str) -> List[str]:
    """Write ``<head>.png`` per head (accuracy and loss panels); return the written paths."""
    plt = pyplot()
    written = []
    epochs = [row["epoch"] for row in rows]
    for head in heads:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for axis, metric in zip(axes, ("accuracy", "loss")):
            for prefix, style in (("", "-"), ("val_", "--")):
                key = f"{prefix}{head}_{metric}"
                if any(key in row for row in rows):
                    axis.plot(epochs, [row.get(key, float("nan")) for row in rows], style,
                              label="validation" if prefix else "train")
            axis.set_title(f"{head} {metric}")
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            if axis.get_lines():
                axis.legend()
        figure.tight_layout()
        path = fs.join(folder, f"{head}.png")
        save_figure(figure, path, dpi=100, tight=False)
        written.append(path)
    return written
