"""The run folder: what ``training.fit`` writes, and the resumable state.

```
runs/NAME/
  config.yaml        resolved configuration (what was really run)
  manifest.json      copy of the dataset manifest (heads, vocabularies, splits)
  model.keras        best model on the validation metric (+ .h5 when asked, e.g. focal_loss.h5)
  last.keras         model after the last epoch
  history.csv        one row per completed epoch, never twice, never a gap
  logs/              TensorBoard
  curves/<head>.png  training curves (accuracy and loss, train and validation)
  metrics.json       evaluation on the held-out split
  checkpoints/       epoch-NNNN.keras + state.json (what a re-run resumes from), and the epoch before
                     (its checkpoint + state.previous.json: the fallback when the last is damaged)
  .training-run      written first: the folder is this run's (training.fit refuses folders without it)
  .lock              while a fit writes the folder: its process id, host and start time
```

``state.json`` is written last after every epoch and is the commit point: it names the checkpoint
of the last completed epoch and holds the history and the callbacks' counters.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import keras

from common import fs
from common.errors import UserError

LOG = logging.getLogger("training.run")
PREVIOUS_STATE = "state.previous.json"  # the state before the last commit, kept with its checkpoint


@dataclasses.dataclass
class Best:
    """The best value of the monitored metric so far, and the epoch that reached it."""

    value: Optional[float]
    epoch: int
    monitor: str


@dataclasses.dataclass
class RunState:
    """What a run has done, committed to ``checkpoints/state.json`` after every epoch.

    ``history`` rows are ``{"epoch": n, "learning_rate": …, <metric>: …}``; ``callbacks`` the
    counters of early stopping and ReduceLROnPlateau; ``seed_generators`` the random states of
    dropout and device-side augmentation (Keras does not save them with the model).
    """

    epoch: int = 0
    checkpoint: Optional[str] = None
    best: Optional[Best] = None
    history: List[dict] = dataclasses.field(default_factory=list)
    stage: int = 0
    stopped_early: bool = False
    finished: bool = False
    callbacks: Dict[str, dict] = dataclasses.field(default_factory=dict)
    seed_generators: Optional[List[List[int]]] = None

    def done(self, total_epochs: int) -> bool:
        return self.stopped_early or self.epoch >= total_epochs

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "RunState":
        raw = json.loads(text)
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        if values.get("best"):
            values["best"] = Best(**values["best"])
        return cls(**values)


class RunDir:
    """A run folder. ``writer``: this process writes it (on several hosts only the first does; the others
    train alongside and read it to resume)."""

    def __init__(self, path: str, writer: bool = True):
        self.path, self.writer = path, writer

    def join(self, *parts: str) -> str:
        return fs.join(self.path, *parts)

    @property
    def state_path(self) -> str:
        return self.join("checkpoints", "state.json")

    def checkpoint_name(self, epoch: int) -> str:
        return f"checkpoints/epoch-{epoch:04d}.keras"

    def prepare(self) -> None:
        for folder in ("", "checkpoints", "curves", "logs"):
            fs.makedirs(self.join(folder) if folder else self.path)

    @property
    def previous_state_path(self) -> str:
        return self.join("checkpoints", PREVIOUS_STATE)

    def read_state(self, path: str, check_checkpoint: bool = True) -> Tuple[Optional[RunState], str]:
        """(state, "") when ``path`` holds a state (whose checkpoint is intact), else (None, why not)."""
        if not fs.exists(path):
            return None, "is missing"
        try:
            state = RunState.from_json(fs.read_text(path))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            return None, "is damaged (empty, cut short or not a run state)"
        if check_checkpoint and state.checkpoint and not intact_archive(self.join(state.checkpoint)):
            return None, f"points at {state.checkpoint}, which is damaged or missing"
        return state, ""

    def load_state(self) -> Optional[RunState]:
        """The committed state; when it or its checkpoint is damaged or missing, the one before it
        (kept with the previous epoch's checkpoint), said in one line; ``None`` for a run without one."""
        state, why = self.read_state(self.state_path)
        if state is not None:
            return state
        previous, _ = self.read_state(self.previous_state_path)
        if previous is not None:
            LOG.warning("checkpoints/state.json %s; resuming from the epoch before, %d", why, previous.epoch)
            return previous
        if why == "is missing" and not fs.exists(self.previous_state_path):
            return None
        raise UserError(f"{self.state_path} {why}, and no earlier epoch is kept to resume from: --overwrite "
                        "trains the run again from scratch (its model.keras and history.csv are still there), "
                        "or choose another --out")

    def write_state(self, state: RunState) -> None:
        """Commit ``state``; the state of the epoch before is kept as the previous one (a fallback)."""
        committed = self.read_state(self.state_path, check_checkpoint=False)[0]
        if committed is not None and committed.epoch != state.epoch:
            copy_atomic(self.state_path, self.previous_state_path)
        fs.write_text_atomic(self.state_path, state.to_json())

    def write_history(self, rows: List[dict]) -> None:
        """``history.csv`` from the full list of epoch rows (columns: union of keys, epoch first)."""
        columns = ["epoch"] + sorted({key for row in rows for key in row} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        fs.write_text_atomic(self.join("history.csv"), buffer.getvalue())

    def remove_old_checkpoints(self, keep: Sequence[Optional[str]]) -> None:
        folder = self.join("checkpoints")
        for name in fs.listdir(folder):
            if name.endswith(".keras") and f"checkpoints/{name}" not in keep:
                fs.remove(fs.join(folder, name))


def intact_archive(path: str) -> bool:
    """Whether a ``.keras`` file (a zip archive) is there and whole: every member's checksum holds."""
    if not fs.exists(path):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(fs.read_bytes(path)) if fs.is_remote(path) else path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def save_model_atomic(model, path: str) -> None:
    """Save ``model`` to ``path`` (.keras or .h5) so that the file is either old or complete."""
    suffix = ".h5" if path.endswith(".h5") else ".keras"
    if fs.is_remote(path):
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, "model" + suffix)
            _save(model, local)
            fs.write_bytes_atomic(path, open(local, "rb").read())
        return
    temporary = fs.temporary_name(path) + suffix  # Keras picks the format from the suffix
    try:
        _save(model, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _save(model, path: str) -> None:
    """``.keras`` keeps the optimizer (resuming needs it); legacy ``.h5`` files are for inference and
    other tools, and the legacy loader cannot restore our optimizer state anyway. Only the writing
    process saves: with several processes (multi-host JAX) the global distribution is set aside while
    it does, or Keras would create its helper variables as collectives the other processes never join."""
    with local_variables():
        keras.saving.save_model(model, path, include_optimizer=not path.endswith(".h5"))


@contextlib.contextmanager
def local_variables():
    """No global ``keras.distribution`` while the block runs when this is one of several processes."""
    distribution = keras.distribution.distribution() if keras.config.backend() == "jax" else None
    if distribution is None or not getattr(distribution, "_is_multi_process", False):
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


def copy_atomic(source: str, target: str) -> None:
    """Copy a finished file under a temporary name, then rename (local or remote)."""
    if fs.is_remote(source) or fs.is_remote(target):
        fs.write_bytes_atomic(target, fs.read_bytes(source))
        return
    temporary = fs.temporary_name(target)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
