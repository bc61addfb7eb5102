"""What tests share besides fixtures: paths, small configurations, reading records, damaging shards.

Imported as ``tests.helpers``; ``conftest.py`` holds the fixtures only.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from data_prep import schema
from data_prep.manifest import shard_paths
from data_prep.options import BuildOptions
from training.config import config_from_dict

REPO = pathlib.Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata" / "stanford_cars"
EVAL_SIZE = 64  # the tiny shards' images are ≤ 64 px: every pipeline decodes them at full scale


def build_options(root, out, **overrides):
    settings = dict(dataset="stanford_cars", root=str(root), out=str(out), workers=1, progress=False,
                    accept_rejects=True)
    settings.update(overrides)
    return BuildOptions(**settings)


def read_records(out, manifest, split=None):
    """All records of a build (or one split) parsed with the project's schema, as numpy dicts."""
    heads = list(manifest["heads"])
    splits = [split] if split else list(manifest["splits"])
    records = []
    for name in splits:
        for path in shard_paths(str(out), manifest, name):
            for serialized in tf.data.TFRecordDataset(path):
                parsed = schema.parse_example(serialized, heads)
                record = {key: value.numpy() for key, value in parsed.items()}
                record["split"] = name
                records.append(record)
    return records


def tiny_config(shards, **sections):
    """A small, fast training configuration (custom CNN, 32 px, no downloads) with section overrides."""
    raw = {
        "name": "tiny",
        "data": {"shards": str(shards), "image_size": 32, "batch_size": 8, "augment": "basic"},
        "model": {"backbone": "custom_cnn", "weights": "none", "head": "linear", "dropout": 0.1},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "training": {"epochs": 2, "verbose": 0, "steps_per_epoch": 3, "monitor": "val_model_accuracy"},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return config_from_dict(raw)


def damaged_copy(shards, target, split: str, how: str = "corrupt"):
    """A copy of a shards folder whose first ``split`` shard is corrupted in the middle (``corrupt``)
    or deleted (``missing``); returns (folder, the shard's file name)."""
    shutil.copytree(shards, target)
    name = json.loads((target / "manifest.json").read_text())["splits"][split]["shards"][0]["path"]
    shard = target / name
    if how == "missing":
        shard.unlink()
    else:
        data = bytearray(shard.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
        shard.write_bytes(bytes(data))
    return target, name


def kill_when(command, ready: Callable[[], bool], timeout: float, settle: float = 0.0,
              env: Optional[dict] = None, keep_stderr: bool = False) -> Optional[str]:
    """Start ``command`` in its own process group from the repository root, wait until ``ready()``
    (or the process ends, or ``timeout`` seconds pass), ``settle`` seconds more, then SIGKILL the
    whole group — the way a preempted Colab/Kaggle session ends. Returns its stderr when
    ``keep_stderr``."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL, text=True,
                               start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    time.sleep(settle)
    os.killpg(process.pid, signal.SIGKILL)
    return process.communicate()[1]


def epoch_done(state: pathlib.Path, epoch: int) -> Callable[[], bool]:
    """``ready`` for :func:`kill_when`: the run's checkpoint state records ``epoch`` or later."""
    return lambda: state.exists() and json.loads(state.read_text())["epoch"] >= epoch


def training_step_script(block_tensorflow: bool = False) -> str:
    """Python code that builds a model with the project's builders, losses, metrics and optimiser and
    trains one epoch on random pictures with the backend ``auto`` chooses, then prints a JSON line
    (backend, its reason, whether TensorFlow was installed or imported, the loss). With
    ``block_tensorflow`` it first makes TensorFlow uninstalled for that process."""
    block = 'sys.modules["tensorflow"] = None  # as if not installed: find_spec gives None, import fails\n'
    return "import sys\n" + (block if block_tensorflow else "") + TRAINING_STEP


TRAINING_STEP = f"""
import importlib.util, json, sys
sys.path.insert(0, {str(REPO)!r})
import numpy as np
from common import backend
choice = backend.choose()
import keras
import models
from models.build import build_model
from training.config import config_from_dict
from training.losses import build_losses
from training.metrics import head_metrics
from training.optim import build_optimizer
config = config_from_dict({{"name": "no_tf", "data": {{"shards": "unused", "image_size": 32}},
                           "model": {{"backbone": "custom_cnn", "weights": "none", "head": "linear"}},
                           "optimizer": {{"name": "adam", "learning_rate": 0.003}}}})
heads = {{"make": 3, "model": 5}}
model = build_model(config.model, heads, 32)
model.compile(optimizer=build_optimizer(config.optimizer, config.schedule, 8, 2, 1),
              loss=build_losses(config.loss, list(heads), {{"make": [3, 3, 2], "model": [2, 2, 2, 1, 1]}}, True),
              weighted_metrics={{head: head_metrics(n) for head, n in heads.items()}})
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
labels = {{"make": rng.integers(0, 3, 16), "model": rng.integers(0, 5, 16)}}
history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
print(json.dumps({{"backend": choice.name, "reason": choice.reason,
                  "tensorflow_imported": sys.modules.get("tensorflow") is not None,
                  "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
                  "loss": float(history.history["loss"][-1])}}))
"""


def manifest_of(shards):
    return json.loads((shards / "manifest.json").read_text())


def embeddings(model, records):
    """The 'embedding' layer's output for independently decoded records."""
    layer = keras.Model(model.inputs, model.get_layer("embedding").output)
    images = np.stack([np.round(tf.image.resize(tf.io.decode_jpeg(r["image/encoded"], channels=3),
                                                [EVAL_SIZE, EVAL_SIZE])) for r in records])
    return layer.predict(images, verbose=0)
