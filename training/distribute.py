"""How a run is distributed: the one seam between a run plan and the devices.

:func:`choose_distribution` picks a :class:`Distribution` by ``training.strategy`` (a registry):
``auto`` falls back TPU → several GPUs → one GPU → CPU; forced choices (``tpu``, ``gpu``, ``cpu``,
``mirrored``) that are not available are clear errors. Every choice is logged with the reason.
Nothing assumes 8 TPU cores: Colab's free TPU is a single-chip v5e, Kaggle's has 8; the global
batch follows the number of replicas. The rest of training only asks a distribution for its
replicas, whether evaluation batches must be padded, and a scope to build models in.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Callable, List, Optional

import keras
import tensorflow as tf

from common.errors import UserError
from common.registry import Registry

LOG = logging.getLogger("training.distribute")
TPU_HINTS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "KAGGLE_TPU", "TPU_WORKER_ID")


@dataclasses.dataclass
class Distribution:
    """Where a run's steps execute: a ``tf.distribute`` strategy and what it implies."""

    strategy: tf.distribute.Strategy
    kind: str  # tpu | mirrored | gpu | cpu
    reason: str

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def on_tpu(self) -> bool:
        return self.kind == "tpu"

    @property
    def pad(self) -> bool:
        """Evaluation batches must be whole (several replicas, or a TPU's static shapes)."""
        return self.on_tpu or self.replicas > 1

    def scope(self):
        """Where models and optimizers are created."""
        return self.strategy.scope()

    def describe(self) -> dict:
        return {"kind": self.kind, "replicas": self.replicas, "reason": self.reason}


STRATEGIES: Registry[Callable[[str], Distribution]] = Registry("strategy", where="training.strategy")


def tpu_hints() -> List[str]:
    """Signs that this machine has a TPU (environment variables, TPU VM device files)."""
    hints = [name for name in TPU_HINTS if os.environ.get(name)]
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        hints.append("TPU device files")
    return hints


_CONNECTED: dict = {}  # address → (strategy, description): a TPU is initialised once per process


def connect_tpu(address: str = ""):
    """Resolve, connect and initialise a TPU; return ``(strategy, description)`` or raise.

    Initialising wipes the TPU's memory, so a process (a notebook that first shows the accelerator,
    then trains and tunes) connects once and reuses the strategy."""
    if address in _CONNECTED:
        return _CONNECTED[address]
    errors = []
    for candidate in ([address] if address else [None, "local"]):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=candidate)
            if candidate != "local":
                tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
            _CONNECTED[address] = strategy, f"TPU {candidate or resolver.master() or 'found by discovery'}"
            return _CONNECTED[address]
        except Exception as error:  # every failure mode of TPU discovery: try the next candidate
            errors.append(f"{candidate or 'discovery'}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    raise RuntimeError("; ".join(errors))


def cpu_devices() -> List[str]:
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def choose_distribution(name: str = "auto", tpu: str = "") -> Distribution:
    """The distribution for ``training.strategy`` (and ``training.tpu``), logged with the reason."""
    choice = STRATEGIES.get(name)(tpu)
    LOG.info("strategy: %s with %d replica(s) — %s", choice.kind, choice.replicas, choice.reason)
    return choice


def _tpu(tpu: str, forced: bool):
    """A TPU distribution, or ``None`` with the reason to fall back (``forced``: no TPU is an error)."""
    hints = tpu_hints() if not tpu else ["training.tpu is set"]
    if not (hints or forced):
        return None, "no TPU found"
    try:
        strategy, where = connect_tpu(tpu)
        return Distribution(strategy, "tpu", f"{where} ({', '.join(hints) or 'forced'})"), ""
    except Exception as error:
        if forced:
            raise UserError(f"training.strategy: tpu — no TPU could be initialised ({error}). On a Cloud TPU VM "
                            "install tensorflow-tpu; on Colab or Kaggle use the JAX backend "
                            "(training.backend: jax); or use strategy: auto") from None
        LOG.info("TPU hints (%s) but no TPU initialised: %s", ", ".join(hints), error)
        return None, "TPU initialisation failed"


def _default(kind: str, reason: str) -> Distribution:
    # One device: TensorFlow's default strategy places ops itself; OneDeviceStrategy would route every
    # batch through a distributed iterator (about 10% slower on CPU).
    return Distribution(tf.distribute.get_strategy(), kind, reason)


@STRATEGIES.register("auto")
def _auto(tpu: str) -> Distribution:
    found, reason = _tpu(tpu, forced=False)
    if found:
        return found
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return Distribution(tf.distribute.MirroredStrategy(), "mirrored", f"{reason}; {len(gpus)} GPUs")
    if gpus:
        return _default("gpu", f"{reason}; one GPU")
    return _default("cpu", f"{reason}; no GPU found")


@STRATEGIES.register("tpu")
def _forced_tpu(tpu: str) -> Distribution:
    return _tpu(tpu, forced=True)[0]


@STRATEGIES.register("gpu")
def _gpu(tpu: str) -> Distribution:
    if not tf.config.list_physical_devices("GPU"):
        raise UserError("training.strategy: gpu — TensorFlow sees no GPU (is this tensorflow-cpu, or are the CUDA "
                        "libraries missing?); use strategy: auto or cpu")
    return _default("gpu", "strategy: gpu requested; one GPU")


@STRATEGIES.register("cpu")
def _cpu(tpu: str) -> Distribution:
    if tf.config.list_physical_devices("GPU"):  # keep a machine with GPUs on its CPU
        return Distribution(tf.distribute.OneDeviceStrategy("/cpu:0"), "cpu", "strategy: cpu requested; GPUs left idle")
    return _default("cpu", "strategy: cpu requested; CPU requested")


@STRATEGIES.register("mirrored")
def _mirrored(tpu: str) -> Distribution:
    gpus = tf.config.list_physical_devices("GPU")
    devices = [f"/gpu:{index}" for index in range(len(gpus))] if gpus else cpu_devices()
    if len(devices) < 2:
        raise UserError("training.strategy: mirrored needs at least two devices "
                        f"(found {len(gpus)} GPU(s) and {len(cpu_devices())} logical CPU(s))")
    return Distribution(tf.distribute.MirroredStrategy(devices), "mirrored",
                        f"strategy: mirrored requested; {len(devices)} devices")


def global_batch_size(per_replica: int, replicas: int, global_batch: Optional[int] = None) -> int:
    """The global batch: ``per_replica × replicas``, or a fixed ``global_batch`` that must divide evenly."""
    if global_batch:
        if global_batch % replicas:
            raise UserError(f"data.global_batch_size: {global_batch} does not divide over {replicas} replicas")
        return global_batch
    return per_replica * replicas


def split_cpu(count: int = 2) -> None:
    """Expose ``count`` logical CPU devices (before TensorFlow initialises) for MirroredStrategy tests."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def set_precision(policy: Optional[str]) -> None:
    """Set the global mixed-precision policy (``None`` restores float32; the config allows only
    ``mixed_bfloat16`` and ``mixed_float16``)."""
    keras.mixed_precision.set_global_policy(policy or "float32")
