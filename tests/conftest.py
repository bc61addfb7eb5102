"""Shared fixtures: small synthetic datasets written by the project's own generator, built once per
session, and the real Stanford Cars annotation files in ../shared/realdata (skipped when absent)."""
from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before anything imports TensorFlow: no start-up chatter in the test output

from data_prep.build import build_dataset  # noqa: E402  (after the environment above)
from data_prep.synthetic import generate  # noqa: E402
from tests.helpers import EVAL_SIZE, REALDATA, build_options, tiny_config  # noqa: E402
from training.trainer import fit  # noqa: E402


@pytest.fixture(scope="session")
def realdata() -> pathlib.Path:
    """The real Stanford Cars annotation files (devkit/, labeldata/, kaggle/)."""
    if not (REALDATA / "devkit" / "cars_meta.mat").is_file():
        pytest.skip("../shared/realdata/stanford_cars is not available")
    return REALDATA


@pytest.fixture(scope="session")
def stanford_tree(tmp_path_factory):
    """A synthetic Stanford Cars devkit tree (4 makes × 2 models × 10 images + copies + bad files)."""
    root = tmp_path_factory.mktemp("stanford")
    truth = generate("stanford_cars", str(root), "devkit", makes=4, models_per_make=2, images_per_model=10, seed=1)
    return root, truth


@pytest.fixture(scope="session")
def compcars_tree(tmp_path_factory):
    """A synthetic CompCars tree under data/ with misspelled and duplicate make names."""
    root = tmp_path_factory.mktemp("compcars")
    truth = generate("compcars", str(root), "data", makes=8, models_per_make=2, images_per_model=10, seed=2)
    return root, truth



@pytest.fixture(scope="session")
def stanford_build(stanford_tree, tmp_path_factory):
    """The synthetic Stanford tree built with default options (official split)."""
    root, truth = stanford_tree
    out = tmp_path_factory.mktemp("stanford_build")
    manifest = build_dataset(build_options(root, out))
    return out, manifest, truth



@pytest.fixture(scope="session")
def tiny_shards(stanford_tree, tmp_path_factory):
    """The synthetic Stanford tree as stratified shards of ≤ 64 px pictures, for training tests."""
    root, _ = stanford_tree
    out = tmp_path_factory.mktemp("tiny_shards")
    build_dataset(build_options(root, out, split="stratified", max_side=64, num_shards=2, val_fraction=0.2,
                                test_fraction=0.2))
    return out


@pytest.fixture(scope="session")
def trained(tiny_shards, tmp_path_factory):
    """A run folder with model.keras and focal_loss.h5 trained a few steps on the tiny shards."""
    run = tmp_path_factory.mktemp("eval_run") / "run"
    config = tiny_config(tiny_shards, data={"image_size": EVAL_SIZE, "augment": "none"},
                         training={"epochs": 3, "steps_per_epoch": 6, "model_name": "focal_loss.h5"})
    fit(config, str(run))
    return run


@pytest.fixture(autouse=True)
def float32_after_each_test():
    """A run plan sets Keras' global precision policy (mixed_bfloat16 for some configs): reset it."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")
