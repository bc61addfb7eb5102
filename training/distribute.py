"""How a run is distributed: the one seam between a run plan and the devices, on either backend.

:func:`choose_distribution` picks a :class:`Distribution` by ``training.strategy`` (a registry whose
entries know both backends):

* TensorFlow — ``tf.distribute``: ``auto`` falls back TPU (TPUStrategy, for Cloud TPU VMs that run
  a TensorFlow with TPU support) → several GPUs (MirroredStrategy) → one GPU → CPU;
* JAX — ``keras.distribution.DataParallel`` over the devices JAX sees (TPU chips on today's Colab
  and Kaggle TPUs, GPUs, or N CPU devices), one replica per device; several processes (a TPU pod
  slice) after ``keras.distribution.initialize()``, each reading its own part of the shards.

Forced choices (``tpu``, ``gpu``, ``cpu``, ``mirrored``) that are not available are clear errors.
Every choice is logged with the backend and the reason. Nothing assumes 8 TPU cores: the global batch
follows the replicas. The rest of training asks a distribution for its replicas, its processes,
whether evaluation batches must be padded, and a scope to build models in.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Callable, List, Optional, Tuple

import keras
import tensorflow as tf

from common import backend
from common.errors import UserError
from common.registry import Registry

LOG = logging.getLogger("training.distribute")


@dataclasses.dataclass
class Distribution:
    """Where a run's steps execute and what that implies.

    ``strategy`` is the ``tf.distribute`` strategy on TensorFlow (``None`` on JAX, where the
    distribution is set globally through ``keras.distribution``)."""

    kind: str  # tpu | mirrored | data_parallel | gpu | cpu
    replicas: int  # devices a global batch is split over (all processes together)
    reason: str
    strategy: Optional[tf.distribute.Strategy] = None
    backend: str = "tensorflow"
    processes: int = 1  # hosts (JAX multi-process: a TPU pod slice)
    process: int = 0  # this host's index
    devices: Tuple[str, ...] = ()

    @property
    def on_tpu(self) -> bool:
        return self.kind == "tpu"

    @property
    def pad(self) -> bool:
        """Evaluation batches must be whole (several replicas, or a TPU's static shapes)."""
        return self.on_tpu or self.replicas > 1

    def scope(self):
        """Where models and optimizers are created."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def wait_for_others(self, name: str) -> None:
        """With several processes: none goes on before all got here (e.g. the writer's last model is
        saved before every process loads it)."""
        if self.processes > 1:
            from jax.experimental import multihost_utils  # several processes: the JAX backend

            multihost_utils.sync_global_devices(name)

    def describe(self) -> dict:
        return {"backend": self.backend, "kind": self.kind, "replicas": self.replicas, "processes": self.processes,
                "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A ``training.strategy`` value: how each backend makes it (``make(tpu address)``)."""

    tensorflow: Callable[[str], Distribution]
    jax: Callable[[str], Distribution]


STRATEGIES: Registry[Strategy] = Registry("strategy", where="training.strategy")


def tpu_hints() -> List[str]:
    """Signs that this machine has a TPU (environment variables, TPU VM device files)."""
    return backend.tpu_hints()


def choose_distribution(name: str = "auto", tpu: str = "", multi_host: bool = False) -> Distribution:
    """The distribution for ``training.strategy`` (and ``training.tpu``) on Keras' backend, logged
    with the backend, the devices and the reason. ``multi_host``: connect this host to the others
    first (JAX, a TPU pod slice)."""
    in_use = keras.config.backend()
    if in_use not in backend.BACKENDS:
        raise UserError(f"Keras runs on {in_use}; this project trains on {' or '.join(backend.BACKENDS)}")
    if multi_host:
        connect_hosts(in_use)
    choice = getattr(STRATEGIES.get(name), in_use)(tpu)
    why = backend.chosen().reason if backend.chosen() else "KERAS_BACKEND"
    LOG.info("backend: %s (%s); strategy: %s with %d replica(s)%s — %s", in_use, why, choice.kind, choice.replicas,
             f" over {choice.processes} processes" if choice.processes > 1 else "", choice.reason)
    return choice


_HOSTS_CONNECTED: List[bool] = []


def connect_hosts(in_use: str) -> None:
    """``keras.distribution.initialize()`` once per process: every host of a pod slice runs the same
    command; Cloud TPU provides the addresses (elsewhere: KERAS_DISTRIBUTION_JOB_ADDRESSES,
    KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID)."""
    if in_use != "jax":
        raise UserError("training.multi_host: several hosts are connected with keras.distribution, which needs "
                        "the JAX backend (training.backend: jax)")
    if _HOSTS_CONNECTED:
        return
    addresses = os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
    LOG.info("training.multi_host: connecting to the coordinator %s as process %s of %s (waits for all of them)",
             addresses.split(",")[0] or "(from the Cloud TPU environment)",
             os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "?"),
             os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "?"))
    try:
        keras.distribution.initialize()
    except Exception as error:  # jax raises ValueError, RuntimeError or its own XlaRuntimeError here
        raise UserError(
            f"training.multi_host: could not connect the hosts ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}). On a Cloud TPU pod slice run the same command on every host; "
            "elsewhere set KERAS_DISTRIBUTION_JOB_ADDRESSES (host:port of each process, the first is the "
            "coordinator), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (0, 1, ...) in every "
            "process, or set training.multi_host: false for one host") from None
    _HOSTS_CONNECTED.append(True)


# --- TensorFlow: tf.distribute ---------------------------------------------------------------------

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


def _tpu(tpu: str, forced: bool):
    """A TPU distribution, or ``None`` with the reason to fall back (``forced``: no TPU is an error)."""
    hints = tpu_hints() if not tpu else ["training.tpu is set"]
    if not (hints or forced):
        return None, "no TPU found"
    try:
        strategy, where = connect_tpu(tpu)
        return _tf(strategy, "tpu", f"{where} ({', '.join(hints) or 'forced'})"), ""
    except Exception as error:
        if forced:
            raise UserError(f"training.strategy: tpu — no TPU could be initialised ({error}). On a Cloud TPU VM "
                            "install tensorflow-tpu; on Colab or Kaggle use the JAX backend "
                            "(training.backend: jax); or use strategy: auto") from None
        LOG.info("TPU hints (%s) but no TPU initialised: %s", ", ".join(hints), error)
        return None, "TPU initialisation failed"


def _tf(strategy: tf.distribute.Strategy, kind: str, reason: str) -> Distribution:
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow places ops on its first GPU, else the CPU
        devices = tuple(device.name for device in (tf.config.list_logical_devices("GPU")
                                                   or tf.config.list_logical_devices("CPU"))[:1])
    return Distribution(kind, strategy.num_replicas_in_sync, reason, strategy, devices=devices)


def _default(kind: str, reason: str) -> Distribution:
    # One device: TensorFlow's default strategy places ops itself; OneDeviceStrategy would route every
    # batch through a distributed iterator (about 10% slower on CPU).
    return _tf(tf.distribute.get_strategy(), kind, reason)


def _tf_auto(tpu: str) -> Distribution:
    found, reason = _tpu(tpu, forced=False)
    if found:
        return found
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return _tf(tf.distribute.MirroredStrategy(), "mirrored", f"{reason}; {len(gpus)} GPUs")
    if gpus:
        return _default("gpu", f"{reason}; one GPU")
    return _default("cpu", f"{reason}; no GPU found")


def _tf_tpu(tpu: str) -> Distribution:
    return _tpu(tpu, forced=True)[0]


def _tf_gpu(tpu: str) -> Distribution:
    if not tf.config.list_physical_devices("GPU"):
        raise UserError("training.strategy: gpu — TensorFlow sees no GPU (is this tensorflow-cpu, or are the CUDA "
                        "libraries missing?); use strategy: auto or cpu")
    return _default("gpu", "strategy: gpu requested; one GPU")


def _tf_cpu(tpu: str) -> Distribution:
    if tf.config.list_physical_devices("GPU"):  # keep a machine with GPUs on its CPU
        return _tf(tf.distribute.OneDeviceStrategy("/cpu:0"), "cpu", "strategy: cpu requested; GPUs left idle")
    return _default("cpu", "strategy: cpu requested; CPU requested")


def _tf_mirrored(tpu: str) -> Distribution:
    gpus = tf.config.list_physical_devices("GPU")
    devices = [f"/gpu:{index}" for index in range(len(gpus))] if gpus else cpu_devices()
    if len(devices) < 2:
        raise UserError("training.strategy: mirrored needs at least two devices "
                        f"(found {len(gpus)} GPU(s) and {len(cpu_devices())} logical CPU(s))")
    return _tf(tf.distribute.MirroredStrategy(devices), "mirrored", f"strategy: mirrored requested; {len(devices)} devices")


# --- JAX: keras.distribution ------------------------------------------------------------------------

def _jax(devices: list, reason: str) -> Distribution:
    """Data parallelism over ``devices`` (set globally: Keras' JAX trainer shards each batch)."""
    import jax  # the JAX backend is running: JAX is installed

    platform = devices[0].platform
    if len(devices) > 1:  # auto_shard_dataset off: each process already reads its own part of the shards
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    else:
        keras.distribution.set_distribution(None)
    kind = "tpu" if platform == "tpu" else "data_parallel" if len(devices) > 1 else platform
    return Distribution(kind, len(devices), f"{reason}; {len(devices)} {platform.upper()} device(s)", None, "jax",
                        jax.process_count(), jax.process_index(), tuple(str(device) for device in devices))


def _jax_devices(platform: Optional[str] = None) -> list:
    import jax

    try:
        return jax.devices(platform) if platform else jax.devices()
    except RuntimeError:  # JAX has no such platform here
        return []


def _jax_auto(tpu: str) -> Distribution:
    return _jax(_jax_devices(), "every device JAX sees")


def _jax_forced(platform: str) -> Callable[[str], Distribution]:
    def make(tpu: str) -> Distribution:
        devices = _jax_devices(platform)
        if not devices:
            raise UserError(f"training.strategy: {platform} — JAX sees no {platform.upper()} (it sees "
                            f"{', '.join(sorted({d.platform for d in _jax_devices()})) or 'nothing'}); "
                            "use strategy: auto")
        return _jax(devices, f"strategy: {platform} requested")

    return make


def _jax_cpu(tpu: str) -> Distribution:
    return _jax(_jax_devices("cpu")[:1], "strategy: cpu requested")


def _jax_mirrored(tpu: str) -> Distribution:
    devices = _jax_devices()
    if len(devices) < 2:
        raise UserError("training.strategy: mirrored needs at least two devices (JAX sees one; on a CPU set "
                        "XLA_FLAGS=--xla_force_host_platform_device_count=2)")
    return _jax(devices, "strategy: mirrored requested")


STRATEGIES.register("auto")(Strategy(_tf_auto, _jax_auto))
STRATEGIES.register("tpu")(Strategy(_tf_tpu, _jax_forced("tpu")))
STRATEGIES.register("gpu")(Strategy(_tf_gpu, _jax_forced("gpu")))
STRATEGIES.register("cpu")(Strategy(_tf_cpu, _jax_cpu))
STRATEGIES.register("mirrored")(Strategy(_tf_mirrored, _jax_mirrored))


def global_batch_size(per_replica: int, replicas: int, global_batch: Optional[int] = None) -> int:
    """The global batch: ``per_replica × replicas``, or a fixed ``global_batch`` that must divide evenly."""
    if global_batch:
        if global_batch % replicas:
            raise UserError(f"data.global_batch_size: {global_batch} does not divide over {replicas} replicas "
                            f"(devices); choose a multiple of {replicas}, or set data.batch_size (per replica) instead")
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
