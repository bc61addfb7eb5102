"""Shared fixtures: small synthetic datasets written by the project's own generator, built once per
session, and the real Stanford Cars annotation files in ../shared/realdata (skipped when absent)."""
from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata" / "stanford_cars"


@pytest.fixture(scope="session")
def realdata() -> pathlib.Path:
    """The real Stanford Cars annotation files (devkit/, labeldata/, kaggle/)."""
    if not (REALDATA / "devkit" / "cars_meta.mat").is_file():
        pytest.skip("../shared/realdata/stanford_cars is not available")
    return REALDATA


@pytest.fixture(scope="session")
def stanford_tree(tmp_path_factory):
    """A synthetic Stanford Cars devkit tree (4 makes × 2 models × 10 images + copies + bad files)."""
    from data_prep.synthetic import generate

    root = tmp_path_factory.mktemp("stanford")
    truth = generate("stanford_cars", str(root), "devkit", makes=4, models_per_make=2, images_per_model=10, seed=1)
    return root, truth


@pytest.fixture(scope="session")
def compcars_tree(tmp_path_factory):
    """A synthetic CompCars tree under data/ with misspelled and duplicate make names."""
    from data_prep.synthetic import generate

    root = tmp_path_factory.mktemp("compcars")
    truth = generate("compcars", str(root), "data", makes=8, models_per_make=2, images_per_model=10, seed=2)
    return root, truth


def build_options(root, out, **overrides):
    from data_prep.options import BuildOptions

    settings = dict(dataset="stanford_cars", root=str(root), out=str(out), workers=1, progress=False,
                    accept_rejects=True)
    settings.update(overrides)
    return BuildOptions(**settings)


@pytest.fixture(scope="session")
def stanford_build(stanford_tree, tmp_path_factory):
    """The synthetic Stanford tree built with default options (official split)."""
    from data_prep.build import build_dataset

    root, truth = stanford_tree
    out = tmp_path_factory.mktemp("stanford_build")
    manifest = build_dataset(build_options(root, out))
    return out, manifest, truth


def read_records(out, manifest, split=None):
    """All records of a build (or one split) parsed with the project's schema, as numpy dicts."""
    import tensorflow as tf

    from data_prep import schema
    from data_prep.manifest import shard_paths

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


@pytest.fixture(scope="session")
def tiny_shards(stanford_tree, tmp_path_factory):
    """The synthetic Stanford tree as stratified shards of ≤ 64 px pictures, for training tests."""
    from data_prep.build import build_dataset

    root, _ = stanford_tree
    out = tmp_path_factory.mktemp("tiny_shards")
    build_dataset(build_options(root, out, split="stratified", max_side=64, num_shards=2, val_fraction=0.2,
                                test_fraction=0.2))
    return out


def tiny_config(shards, **sections):
    """A small, fast training configuration (custom CNN, 32 px, no downloads) with section overrides."""
    from training.config import config_from_dict

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


EVAL_SIZE = 64  # the tiny shards' images are ≤ 64 px: every pipeline decodes them at full scale


@pytest.fixture(scope="session")
def trained(tiny_shards, tmp_path_factory):
    """A run folder with model.keras and focal_loss.h5 trained a few steps on the tiny shards."""
    from training.fit import fit

    run = tmp_path_factory.mktemp("eval_run") / "run"
    config = tiny_config(tiny_shards, data={"image_size": EVAL_SIZE, "augment": "none"},
                         training={"epochs": 3, "steps_per_epoch": 6, "model_name": "focal_loss.h5"})
    fit(config, str(run))
    return run


def damaged_copy(shards, target, split: str, how: str = "corrupt"):
    """A copy of a shards folder whose first ``split`` shard is corrupted in the middle (``corrupt``)
    or deleted (``missing``); returns (folder, the shard's file name)."""
    import json
    import shutil

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
