"""Choosing the Keras backend before Keras is imported, and the run plan on several hosts (JAX)."""
import json

import numpy as np
import pytest

from common import backend
from common.errors import UserError
from tests.helpers import build_options, tiny_config


@pytest.fixture
def fresh(monkeypatch):
    """``common.backend`` as in a new process (no choice made, no KERAS_BACKEND set by the user)."""
    monkeypatch.setattr(backend, "_CHOSEN", [])
    monkeypatch.setattr(backend, "_USER_ENVIRONMENT", None)
    monkeypatch.setattr(backend, "keras_backend_in_use", lambda: None)  # as before Keras is imported
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # what this test process runs; restored afterwards
    for hint in backend.TPU_HINTS:
        monkeypatch.delenv(hint, raising=False)
    return monkeypatch


def test_auto_is_the_environment_then_jax_on_a_tpu_then_tensorflow(fresh):
    assert backend.choose() == backend.Choice("tensorflow", "no TPU")
    fresh.setattr(backend, "_CHOSEN", [])
    fresh.setattr(backend, "_USER_ENVIRONMENT", "jax")
    assert backend.choose() == backend.Choice("jax", "KERAS_BACKEND is set")
    fresh.setattr(backend, "_CHOSEN", [])
    fresh.setattr(backend, "_USER_ENVIRONMENT", None)
    fresh.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-8")  # a TPU VM, as Kaggle's
    fresh.setattr(backend, "jax_tpu_devices", lambda: 8)
    choice = backend.choose()
    assert choice.name == "jax" and "JAX sees 8 TPU device(s)" in choice.reason
    import os

    assert os.environ["KERAS_BACKEND"] == "jax"  # set for the Keras import that follows
    assert backend.choose() is choice  # once chosen, auto keeps it


def test_auto_is_jax_on_a_machine_with_jax_and_no_tensorflow(fresh):
    """A GPU box set up for JAX, or Colab's TPU runtime before the notebook's install."""
    fresh.setattr(backend, "installed", lambda name: name == "jax")
    assert backend.choose() == backend.Choice("jax", "no TPU, and TensorFlow is not installed")
    fresh.setattr(backend, "_CHOSEN", [])
    fresh.setattr(backend, "installed", lambda name: True)  # both installed: TensorFlow, as before
    assert backend.choose() == backend.Choice("tensorflow", "no TPU")


def test_an_explicit_backend_replaces_an_automatic_one_until_keras_is_imported(fresh):
    backend.choose()
    assert backend.choose("jax").name == "jax"  # training.fit: the config asks for JAX
    fresh.setattr(backend, "keras_backend_in_use", lambda: "jax")
    with pytest.raises(UserError, match="Keras already runs on jax in this process, and tensorflow was asked for"):
        backend.choose("tensorflow")


@pytest.mark.parametrize("setting, message", [
    ("tensorflow", "training.backend: tensorflow, but KERAS_BACKEND=jax is set"),
    ("torch", "training.backend: unknown backend 'torch'; choose one of: auto, jax, tensorflow"),
])
def test_backend_mistakes_are_one_clear_line(fresh, setting, message):
    fresh.setattr(backend, "_USER_ENVIRONMENT", "jax")
    with pytest.raises(UserError, match=message):
        backend.choose(setting)


def test_a_backend_that_is_not_installed(fresh):
    fresh.setattr(backend, "installed", lambda name: name != "jax")
    with pytest.raises(UserError, match="the jax backend is not installed here: install jax"):
        backend.choose("jax")


def test_the_keras_in_this_process_must_be_the_one_asked_for(monkeypatch):
    """This test process runs Keras on TensorFlow: a run plan asking for JAX is refused, not half-run.
    As in a process started without KERAS_BACKEND (a pytest-xdist worker inherits the one that the
    controlling process's own choice set)."""
    import keras

    monkeypatch.setattr(backend, "_USER_ENVIRONMENT", None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)

    from training.plan import make_plan

    assert keras.config.backend() == "tensorflow"
    with pytest.raises(UserError, match="Keras already runs on tensorflow in this process, and jax was asked for"):
        make_plan(tiny_config("unused", training={"backend": "jax"}))


def test_several_hosts_read_their_own_shards_and_step_together(stanford_tree, tmp_path):
    """Two processes (a pod slice's hosts), faked: each reads a round-robin share of the shards, feeds
    half the global batch, and both evaluate the same number of batches — every example once."""
    from data_prep.build import build_dataset
    from training.distribute import Distribution
    from training.plan import evaluation_data, make_plan, padded_examples, training_data

    root, _ = stanford_tree
    build_dataset(build_options(root, tmp_path / "shards", split="stratified", max_side=64, num_shards=3))
    config = tiny_config(tmp_path / "shards", data={"batch_size": 4})
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    seen, weights, batches = [], 0.0, []
    for process in (0, 1):
        distribution = Distribution("tpu", 4, "faked", None, "jax", processes=2, process=process)
        plan = make_plan(config, distribution)
        assert (plan.global_batch, plan.local_batch) == (16, 8)
        files, examples, steps = plan.process_shards("test")
        seen += [file.rsplit("/", 1)[-1] for file in files]
        images, labels = next(iter(training_data(plan)[0]))
        assert images.shape[0] == 8  # this host's part of the global batch
        counted = [(float(np.sum(w["model"])), x.shape[0]) for x, _, w in evaluation_data(plan, "test")]
        batches.append(len(counted))
        weights += sum(total for total, _ in counted)
        assert all(size == 8 for _, size in counted)
    expected = [shard["path"] for shard in manifest["splits"]["test"]["shards"]]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))  # every shard read by one host
    assert batches[0] == batches[1]  # both hosts step the same number of times
    assert weights == manifest["splits"]["test"]["examples"]  # every example counted once, padding weighs 0
    assert padded_examples(plan, "test") == batches[0] * 16
    with pytest.raises(UserError, match="the test split has 3 shard\\(s\\) for 4 processes"):
        make_plan(config, Distribution("tpu", 4, "faked", None, "jax", processes=4, process=0)).process_shards("test")
