"""The JAX backend, as today's Colab and Kaggle TPUs run it: Keras 3 on JAX with keras.distribution's
DataParallel, tf.data feeding it. Every run is its own process (a process has one Keras backend) with
KERAS_BACKEND=jax, JAX_PLATFORMS=cpu and two CPU devices standing in for the chips; the test process
itself stays on TensorFlow, which is how a JAX-trained model is checked from the other backend.
"""
import csv
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO, epoch_done, kill_when, tiny_config
from training.config import to_plain

pytest.importorskip("jax")

JAX_ENVIRONMENT = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
EPOCHS = 8


def run_jax(arguments, timeout=600, **options):
    environment = {**os.environ, **JAX_ENVIRONMENT}
    return subprocess.run([sys.executable, "-m"] + arguments, cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=timeout, **options)


def history(run):
    return list(csv.DictReader(open(run / "history.csv")))


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """The demo configuration trained on JAX over two devices, killed with SIGKILL mid-epoch and
    resumed by the same command."""
    folder = tmp_path_factory.mktemp("jax")
    run = folder / "run"
    command = [sys.executable, "-m", "training.fit", "--config", "demo.yaml", "--out", str(run),
               "--set", f"data.shards={folder / 'demo_data' / 'shards'}", "--set", f"training.epochs={EPOCHS}",
               "--set", "data.batch_size=16", "--set", "data.prepare.images_per_model=30"]
    environment = {**os.environ, **JAX_ENVIRONMENT}
    state = run / "checkpoints" / "state.json"
    first_log = kill_when(command, epoch_done(state, 3), timeout=400, settle=0.5, env=environment, keep_stderr=True)
    killed_after = json.loads(state.read_text())["epoch"]
    resumed = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    return run, first_log, killed_after, resumed


@pytest.mark.slow
def test_the_demo_learns_on_two_jax_devices_and_resumes_after_kill_minus_nine(jax_run):
    run, first_log, killed_after, resumed = jax_run
    assert "backend: jax (KERAS_BACKEND is set); strategy: data_parallel with 2 replica(s)" in first_log
    assert "2 CPU device(s)" in first_log and "global batch 32 (2 replica(s))" in first_log
    assert 3 <= killed_after < EPOCHS, "the run was not interrupted mid-training"
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} after epoch {killed_after} of {EPOCHS}" in resumed.stderr
    assert [int(row["epoch"]) for row in history(run)] == list(range(1, EPOCHS + 1))  # none twice, none missing
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"]["backend"] == "jax" and metrics["strategy"]["replicas"] == 2
    assert metrics["strategy"]["jit_compile"] is True  # compiled by default on JAX
    model = metrics["heads"]["model"]
    assert model["accuracy"] > 5 * model["chance"], model  # 24 classes: far above chance


@pytest.mark.slow
def test_a_jax_model_evaluates_the_same_from_tensorflow_and_padding_counts_each_example_once(jax_run, tmp_path):
    """training.fit's evaluation on JAX (two devices: padded to whole batches of 32) against eval.test in
    this TensorFlow process (NumPy over every test image once): the same accuracies, the same count."""
    import keras

    from eval.test import evaluate

    assert keras.config.backend() == "tensorflow"
    run = jax_run[0]
    on_jax = json.loads((run / "metrics.json").read_text())
    on_tensorflow = evaluate(str(run / "model.keras"), out=str(tmp_path / "eval"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert on_tensorflow["examples"] == manifest["splits"]["test"]["examples"]
    assert manifest["splits"]["test"]["examples"] % 32  # the last batch really is padded on two devices
    for head, entry in on_jax["heads"].items():
        assert entry["accuracy"] == pytest.approx(on_tensorflow["heads"][head]["accuracy"], abs=1e-6), head
        assert entry["examples"] == on_tensorflow["heads"][head]["examples"], head
        if entry["top5"] is not None:
            assert entry["top5"] == pytest.approx(on_tensorflow["heads"][head]["top5"], abs=1e-6), head


@pytest.fixture
def tiny_yaml(tiny_shards, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_plain(tiny_config(tiny_shards, training={"steps_per_epoch": 2}))))
    return path


@pytest.mark.slow
def test_a_two_trial_search_on_jax(tiny_yaml, tmp_path):
    out = tmp_path / "search"
    result = run_jax(["tuning.hyperband", "--config", str(tiny_yaml), "--out", str(out), "--algorithm", "random",
                      "--max-trials", "2", "--max-epochs", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    trials = list(csv.DictReader(open(out / "trials.csv")))
    assert [trial["status"] for trial in trials] == ["COMPLETED", "COMPLETED"] and (out / "best.yaml").is_file()
    gs = run_jax(["tuning.hyperband", "--config", str(tiny_yaml), "--out", "gs://bucket/search", "--algorithm",
                  "random", "--max-trials", "1", "--max-epochs", "1"])
    assert gs.returncode == 2 and "only on the TensorFlow backend" in gs.stderr and "Traceback" not in gs.stderr


def test_a_batch_that_does_not_divide_over_the_devices_is_one_clear_error(tiny_yaml, tmp_path):
    result = run_jax(["training.fit", "--config", str(tiny_yaml), "--out", str(tmp_path / "run"),
                      "--set", "data.global_batch_size=7"], timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: data.global_batch_size: 7 does not divide over 2 replicas (devices)" in result.stderr


def test_training_backend_in_the_config_chooses_jax_before_keras_is_imported(tiny_yaml, tmp_path):
    """No KERAS_BACKEND: ``--set training.backend=jax`` alone puts the run on JAX; asking for JAX while
    KERAS_BACKEND says otherwise is refused in one line."""
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    environment.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "training.fit", "--config", str(tiny_yaml), "--out", str(tmp_path / "run"),
               "--set", "training.backend=jax", "--set", "training.epochs=1", "--set", "training.evaluate_split=null"]
    chosen = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert "backend: jax (training.backend: jax)" in chosen.stderr
    conflict = subprocess.run(command, cwd=REPO, env={**environment, "KERAS_BACKEND": "tensorflow"},
                              capture_output=True, text=True, timeout=300)
    assert conflict.returncode == 2 and "KERAS_BACKEND=tensorflow is set" in conflict.stderr


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("localhost", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


@pytest.mark.slow
def test_two_processes_train_one_run_as_a_multi_host_slice(tiny_yaml, tmp_path):
    """A pod slice in miniature: two processes (one CPU device each) joined by
    keras.distribution.initialize(), each reading its own shard of every split; one run folder,
    written by process 0 only, and both processes finish."""
    out = tmp_path / "run"
    addresses = ",".join(f"localhost:{port}" for port in free_ports(2))
    command = [sys.executable, "-m", "training.fit", "--config", str(tiny_yaml), "--out", str(out),
               "--set", "training.multi_host=true", "--set", "data.deterministic=true"]
    processes = []
    for index in range(2):
        environment = {**os.environ, **JAX_ENVIRONMENT, "XLA_FLAGS": "", "KERAS_DISTRIBUTION_JOB_ADDRESSES": addresses,
                       "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        processes.append(subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    try:
        logs = [process.communicate(timeout=400) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, log) in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
        assert "strategy: data_parallel with 2 replica(s) over 2 processes" in log
    assert [int(row["epoch"]) for row in history(out)] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"]["replicas"] == 2 and metrics["strategy"]["processes"] == 2
    assert metrics["heads"]["model"]["examples"] == json.loads((out / "manifest.json").read_text())[
        "splits"]["test"]["examples"]  # each test image counted once over both processes


def test_multi_host_without_a_coordinator_is_one_clear_error(tiny_yaml, tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_DISTRIBUTION")}
    result = subprocess.run([sys.executable, "-m", "training.fit", "--config", str(tiny_yaml), "--out",
                             str(tmp_path / "run"), "--set", "training.multi_host=true"], cwd=REPO,
                            env={**environment, **JAX_ENVIRONMENT}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: training.multi_host: could not connect the hosts" in result.stderr
    assert "KERAS_DISTRIBUTION_JOB_ADDRESSES" in result.stderr
