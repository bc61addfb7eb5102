"""What training prints: one short line per epoch, grouped by head, and on a terminal a progress bar
with the time left during the epoch.

``epoch 3/25  4.1 s  loss 2.52/1.42 · make 0.96/1.00 · model 0.71/0.90 · year 0.72/0.93 · type 0.69/0.90  best``
reads: the loss, then each head's accuracy, training/validation; ``best`` when the monitored metric
improved (the best model was saved). The full history, every metric, stays in ``history.csv``.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional, Sequence

import keras

from common.progress import bar


def pair(logs: Dict[str, float], name: str) -> Optional[str]:
    """``train/val`` of a metric (either alone when the other is missing); ``None`` when neither is logged."""
    values = [logs.get(key) for key in (name, f"val_{name}")]
    shown = [f"{value:.2f}" if value is not None else "–" for value in values]
    if all(value is None for value in values):
        return None
    return "/".join(shown) if values[1] is not None else shown[0]


def epoch_line(epoch: int, epochs: int, seconds: float, logs: Dict[str, float], heads: Sequence[str],
               best: bool = False) -> str:
    parts = [f"loss {pair(logs, 'loss')}"] + [f"{head} {pair(logs, f'{head}_accuracy')}" for head in heads
                                               if pair(logs, f"{head}_accuracy") is not None]
    return f"epoch {epoch}/{epochs}  {seconds:.1f} s  " + " · ".join(parts) + ("  best" if best else "")


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


class EpochLine(keras.callbacks.Callback):
    """Prints :func:`epoch_line` after every epoch; on a terminal a bar over the epoch's steps before it
    (left in place of nothing: the line replaces it)."""

    def __init__(self, heads: Sequence[str], epochs: int, state, terminal: Optional[bool] = None):
        super().__init__()
        self.heads, self.epochs, self.state = list(heads), epochs, state
        self.terminal = on_terminal() if terminal is None else terminal
        self.progress, self.started = None, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        if self.terminal:
            self.progress = bar(total=self.params.get("steps"), desc=f"epoch {epoch + 1}/{self.epochs}",
                                unit="step", leave=False, file=sys.stdout)

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None:
            self.progress.update(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        best = self.state.best is not None and self.state.best.epoch == epoch + 1
        print(epoch_line(epoch + 1, self.epochs, time.perf_counter() - self.started, logs or {}, self.heads, best),
              flush=True)
