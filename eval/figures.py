"""Figures of an evaluation: confusion heatmap (readable with 196 or 1,716 classes), reliability diagram."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.plotting import pyplot, save_figure

LABELLED_CLASSES = 40  # above this the axes carry no class names (the report lists the confused pairs)


def confusion_figure(matrix: np.ndarray, names: Sequence[str], title: str, path: str) -> None:
    """Row-normalised confusion (recall per true class), square-root colour scale so that small
    confusions stay visible; classes keep the manifest's (sorted) order, so makes form blocks."""
    plt = pyplot()
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    size = min(12.0, 3.0 + 0.12 * len(names))
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    # with more classes than pixels, "nearest" would drop whole rows and columns (and the confusions in
    # them); area-averaging keeps an isolated confusion visible as a lighter dot
    smooth = len(names) > LABELLED_CLASSES
    image = axis.imshow(np.sqrt(normalised), cmap="magma_r", vmin=0, vmax=1,
                        interpolation="antialiased" if smooth else "nearest")
    colorbar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.02)
    colorbar.set_ticks(np.sqrt([0, 0.05, 0.25, 0.5, 1.0]))
    colorbar.set_ticklabels(["0", "0.05", "0.25", "0.5", "1"])
    if len(names) <= LABELLED_CLASSES:
        axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=7)
    else:
        axis.set_xticks([])
        axis.set_yticks([])
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(f"{title} — row-normalised ({len(names)} classes)")
    save_figure(figure, path)


def reliability_figure(bins: Sequence[dict], ece: float, title: str, path: str) -> None:
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    top.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="tab:blue", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.plot(centres, [b["confidence"] for b in bins], "o", color="tab:red", markersize=3, label="mean confidence")
    top.set_ylabel("accuracy")
    top.set_title(f"{title} — ECE {ece:.3f}")
    top.legend(fontsize=8)
    bottom.bar(centres, [b["count"] for b in bins], width=width * 0.9, color="gray")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("examples")
    save_figure(figure, path)
