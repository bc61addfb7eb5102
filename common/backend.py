"""Which Keras backend a process runs: chosen once, before Keras is imported.

``choose(requested)`` takes ``training.backend`` (``auto``, ``tensorflow`` or ``jax``) and sets
``KERAS_BACKEND`` for the Keras import that follows:

* ``auto`` — ``KERAS_BACKEND`` when the environment sets it; otherwise JAX when JAX sees TPU devices
  (today's Colab and Kaggle TPUs ship JAX, not a TensorFlow that can drive them) or when JAX is
  installed and TensorFlow is not (a machine set up for JAX), else TensorFlow;
* ``tensorflow`` / ``jax`` — that backend (an error when it is not installed, or when the
  environment or an earlier import already fixed another one).

TensorFlow stays the input pipeline (tf.data) and the file system (``tf.io.gfile``) on both.
Looking for TPUs imports JAX only when there are signs of a TPU (environment variables, device
files), so a CPU or GPU machine pays nothing.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import logging
import os
import sys
from typing import List, Optional

from common.errors import UserError, describe_choices

LOG = logging.getLogger("common.backend")
BACKENDS = ("tensorflow", "jax")
TPU_HINTS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "KAGGLE_TPU", "TPU_WORKER_ID")


@dataclasses.dataclass(frozen=True)
class Choice:
    name: str  # tensorflow | jax
    reason: str


_CHOSEN: List[Choice] = []  # the process's choice, once made
_USER_ENVIRONMENT = os.environ.get("KERAS_BACKEND")  # what the user set, before any choice of ours


def tpu_hints() -> List[str]:
    """Signs that this machine has a TPU (environment variables, TPU VM device files)."""
    hints = [name for name in TPU_HINTS if os.environ.get(name)]
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        hints.append("TPU device files")
    return hints


def jax_tpu_devices() -> int:
    """How many TPU devices JAX sees (0 without JAX, or without a TPU)."""
    if importlib.util.find_spec("jax") is None:
        return 0
    import jax  # heavy and optional: only when a TPU is hinted at

    try:
        return len(jax.devices("tpu"))
    except RuntimeError:  # "Unknown backend tpu" / no TPU platform
        return 0


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def keras_backend_in_use() -> Optional[str]:
    """The backend of an already imported Keras (``None`` before Keras is imported)."""
    keras = sys.modules.get("keras")
    return keras.config.backend() if keras is not None and hasattr(keras, "config") else None


def _auto() -> Choice:
    if _USER_ENVIRONMENT:
        return Choice(_USER_ENVIRONMENT, "KERAS_BACKEND is set")
    hints = tpu_hints()
    if hints:
        devices = jax_tpu_devices()
        if devices:
            return Choice("jax", f"JAX sees {devices} TPU device(s) ({', '.join(hints)})")
        return Choice("tensorflow", f"TPU hints ({', '.join(hints)}) but JAX sees no TPU")
    if not installed("tensorflow") and installed("jax"):
        return Choice("jax", "no TPU, and TensorFlow is not installed")
    return Choice("tensorflow", "no TPU")


def choose(requested: str = "auto") -> Choice:
    """Fix the Keras backend for this process (call before Keras — or TensorFlow, which imports Keras
    — is imported); returns the choice. ``auto`` keeps an earlier choice of this process; an explicit
    backend may still replace an automatic choice as long as Keras is not imported yet."""
    if requested == "auto" and _CHOSEN:
        return _CHOSEN[-1]
    if requested not in ("auto",) + BACKENDS:
        raise UserError("training.backend: " + describe_choices("backend", requested, ("auto",) + BACKENDS))
    if requested != "auto" and _USER_ENVIRONMENT and _USER_ENVIRONMENT != requested:
        raise UserError(f"training.backend: {requested}, but KERAS_BACKEND={_USER_ENVIRONMENT} is set; unset one of "
                        "them")
    choice = _auto() if requested == "auto" else Choice(requested, f"training.backend: {requested}")
    if choice.name not in BACKENDS:
        raise UserError("KERAS_BACKEND: " + describe_choices("backend", choice.name, BACKENDS))
    if not installed(choice.name):
        package = {"jax": "jax (pip install jax, or jax[tpu] on a TPU VM)", "tensorflow": "tensorflow-cpu"}
        raise UserError(f"the {choice.name} backend is not installed here: install {package[choice.name]}")
    in_use = keras_backend_in_use()
    if in_use and requested == "auto":  # Keras is already running: auto means "what it runs on"
        choice = Choice(in_use, f"Keras was imported with {in_use}")
    if in_use and in_use != choice.name:
        raise UserError(f"Keras already runs on {in_use} in this process, and {choice.name} was asked for "
                        f"({choice.reason}): set KERAS_BACKEND={choice.name} before starting Python "
                        "(in a notebook: restart the runtime)")
    os.environ["KERAS_BACKEND"] = choice.name
    if not _CHOSEN or _CHOSEN[-1] != choice:
        LOG.info("Keras backend: %s — %s", choice.name, choice.reason)
        _CHOSEN[:] = [choice]
    return choice


def chosen() -> Optional[Choice]:
    """The choice made in this process, if any."""
    return _CHOSEN[-1] if _CHOSEN else None
