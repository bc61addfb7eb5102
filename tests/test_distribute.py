"""Distribution choice on a CPU machine, forced choices, global batch, MirroredStrategy on 2 logical CPUs."""
import json
import subprocess
import sys

import pytest
import yaml

from common import backend
from common.errors import UserError
from training.config import to_plain
from training.distribute import STRATEGIES, choose_distribution, global_batch_size, tpu_hints
from tests.helpers import REPO, tiny_config


def test_auto_falls_back_to_cpu_and_says_why(caplog, monkeypatch):
    for name in backend.TPU_HINTS:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level("INFO", logger="training.distribute")
    choice = choose_distribution("auto")
    assert choice.kind == "cpu" and choice.replicas == 1 and not choice.on_tpu and not choice.pad
    assert "no TPU found" in choice.reason and "no GPU found" in choice.reason
    assert "backend: tensorflow" in caplog.text and "strategy: cpu with 1 replica(s)" in caplog.text
    assert choice.devices == ("/device:CPU:0",) and choice.backend == "tensorflow"
    assert choose_distribution("cpu").kind == "cpu"


def test_a_tpu_hint_without_a_tpu_falls_back(monkeypatch):
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert "TPU_NAME" in tpu_hints()
    choice = choose_distribution("auto")
    assert choice.kind == "cpu" and "TPU initialisation failed" in choice.reason


def test_a_tpu_is_initialised_once_per_process(monkeypatch):
    """A notebook shows the accelerator, then trains and tunes: initialising again would wipe the TPU."""
    import tensorflow as tf

    from training import distribute as module

    calls = []

    class Resolver:
        def __init__(self, tpu=None):
            calls.append(("resolve", tpu))

        def master(self):
            return "grpc://10.0.0.2:8470"

    monkeypatch.setattr(module, "_CONNECTED", {})
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda resolver: calls.append("connect"))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda resolver: calls.append("initialise"))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda resolver: "the TPU strategy")
    first = module.connect_tpu()
    assert first == ("the TPU strategy", "TPU grpc://10.0.0.2:8470")
    assert module.connect_tpu() is first and calls == [("resolve", None), "connect", "initialise"]


@pytest.mark.parametrize("name, message", [("gpu", "TensorFlow sees no GPU"), ("tpu", "no TPU could be initialised"),
                                           ("mirrored", "needs at least two devices"),
                                           ("tpus", "training.strategy: unknown strategy 'tpus'.*did you mean 'tpu'")])
def test_forced_choices_that_are_unavailable(name, message):
    with pytest.raises(UserError, match=message):
        choose_distribution(name)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_chooses_or_refuses_clearly_on_this_machine(name, monkeypatch):
    """On a CPU-only machine: auto and cpu give one CPU replica; the others say what is missing."""
    for hint in backend.TPU_HINTS:
        monkeypatch.delenv(hint, raising=False)
    try:
        choice = choose_distribution(name)
    except UserError as error:
        assert name in ("gpu", "tpu", "mirrored") and str(error).startswith(f"training.strategy: {name}")
    else:
        assert (choice.kind, choice.replicas) == ("cpu", 1) and choice.describe()["kind"] == "cpu"


def test_global_batch_follows_the_replicas():
    assert global_batch_size(8, 8) == 64 and global_batch_size(8, 1) == 8  # Kaggle v3-8 vs Colab v5e-1
    assert global_batch_size(8, 4, global_batch=64) == 64
    with pytest.raises(UserError, match="does not divide over 3 replicas"):
        global_batch_size(8, 3, global_batch=64)


SCRIPT = """
import sys
from training.distribute import split_cpu
split_cpu(2)  # before TensorFlow initialises
from training.fit import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tiny_shards, tmp_path):
    config = to_plain(tiny_config(tiny_shards, training={"strategy": "mirrored", "epochs": 1}))
    path = tmp_path / "mirrored.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-c", SCRIPT, "--config", str(path), "--out", str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["strategy"]["kind"] == "mirrored" and metrics["strategy"]["replicas"] == 2
    assert metrics["strategy"]["global_batch"] == 16  # 8 per replica × 2
    assert "strategy: mirrored with 2 replica(s)" in result.stderr
