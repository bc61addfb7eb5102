"""Choose the ``tf.distribute`` strategy: TPU → several GPUs → one GPU → CPU (``strategy: auto``).

Every choice is logged with the reason. A forced choice (``tpu``, ``gpu``, ``cpu``, ``mirrored``)
that is not available is a clear error. Nothing assumes 8 TPU cores: Colab's free TPU is now a
single-chip v5e, Kaggle's has 8 cores; the global batch follows ``num_replicas_in_sync``.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import List, Optional

import tensorflow as tf

from common.errors import UserError, describe_choices

LOG = logging.getLogger("training.strategy")
STRATEGIES = ("auto", "tpu", "gpu", "cpu", "mirrored")
TPU_HINTS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "KAGGLE_TPU", "TPU_WORKER_ID")


@dataclasses.dataclass
class StrategyChoice:
    strategy: tf.distribute.Strategy
    kind: str  # tpu | mirrored | gpu | cpu
    reason: str

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def on_tpu(self) -> bool:
        return self.kind == "tpu"


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


def choose_strategy(name: str = "auto", tpu: str = "") -> StrategyChoice:
    """The strategy for ``name``; ``auto`` falls back TPU → GPUs → GPU → CPU and says why."""
    if name not in STRATEGIES:
        raise UserError("training.strategy: " + describe_choices("strategy", name, STRATEGIES))
    gpus = tf.config.list_physical_devices("GPU")
    if name in ("auto", "tpu"):
        hints = tpu_hints() if not tpu else ["training.tpu is set"]
        if hints or name == "tpu":
            try:
                strategy, where = connect_tpu(tpu)
                return _chosen(StrategyChoice(strategy, "tpu", f"{where} ({', '.join(hints) or 'forced'})"))
            except Exception as error:
                if name == "tpu":
                    raise UserError(f"training.strategy: tpu — no TPU could be initialised ({error}). On Colab "
                                    "choose a TPU runtime and install tensorflow-tpu; or use strategy: auto") from None
                LOG.info("TPU hints (%s) but no TPU initialised: %s", ", ".join(hints), error)
        reason = "no TPU found" if not hints else "TPU initialisation failed"
    else:
        reason = f"strategy: {name} requested"
    return _chosen(_non_tpu(name, gpus, reason))


def _non_tpu(name: str, gpus, reason: str) -> StrategyChoice:
    if name == "mirrored":
        devices = [f"/gpu:{index}" for index in range(len(gpus))] if gpus else cpu_devices()
        if len(devices) < 2:
            raise UserError("training.strategy: mirrored needs at least two devices "
                            f"(found {len(gpus)} GPU(s) and {len(cpu_devices())} logical CPU(s))")
        return StrategyChoice(tf.distribute.MirroredStrategy(devices), "mirrored", f"{reason}; {len(devices)} devices")
    if name == "gpu" and not gpus:
        raise UserError("training.strategy: gpu — TensorFlow sees no GPU (is this tensorflow-cpu, or are the CUDA "
                        "libraries missing?); use strategy: auto or cpu")
    if name == "auto" and len(gpus) > 1:
        return StrategyChoice(tf.distribute.MirroredStrategy(), "mirrored", f"{reason}; {len(gpus)} GPUs")
    # One device: TensorFlow's default strategy places ops itself; OneDeviceStrategy would route every
    # batch through a distributed iterator (about 10% slower on CPU) and is only needed to keep a
    # machine with GPUs on its CPU.
    if name in ("auto", "gpu") and gpus:
        return StrategyChoice(tf.distribute.get_strategy(), "gpu", f"{reason}; one GPU")
    if name == "cpu" and gpus:
        return StrategyChoice(tf.distribute.OneDeviceStrategy("/cpu:0"), "cpu", f"{reason}; GPUs left idle")
    return StrategyChoice(tf.distribute.get_strategy(), "cpu",
                          f"{reason}; {'no GPU found' if name == 'auto' else 'CPU requested'}")


def _chosen(choice: StrategyChoice) -> StrategyChoice:
    LOG.info("strategy: %s with %d replica(s) — %s", choice.kind, choice.replicas, choice.reason)
    return choice


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
    """Set the global mixed-precision policy (``None`` restores float32)."""
    import keras

    allowed = (None, "mixed_bfloat16", "mixed_float16")
    if policy not in allowed:
        raise UserError("training.mixed_precision: expected mixed_bfloat16, mixed_float16 or null "
                        f"(received {policy!r})")
    keras.mixed_precision.set_global_policy(policy or "float32")
