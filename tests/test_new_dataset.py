"""Adding a dataset is one folder: a VMMRdb-like layout (a folder per ``make_model_year`` class),
registered the way ``data_prep/datasets/*/__init__.py`` registers its family, builds end to end
(the how-to in docs/data.md, "Adding a dataset")."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from common import fs
from data_prep.build import build_dataset
from data_prep.datasets import DATASETS
from data_prep.images import is_photo_name
from data_prep.readers import DatasetSpec, Layout, ReadOptions
from data_prep.table import DatasetTable, make_rejects, make_table
from tests.helpers import build_options

HEADS = ("make", "model", "year")


def locate(root: str):
    """The base folder: the root itself when its folders are ``make_model_year`` classes."""
    folders = [name for name in fs.listdir(root) if fs.isdir(fs.join(root, name))]
    return root if folders and all(name.count("_") >= 2 and name[-4:].isdigit() for name in folders) else None


def read(base: str, options: ReadOptions) -> DatasetTable:
    rows = []
    for folder in sorted(fs.listdir(base)):
        make, *model, year = folder.split("_")
        for name in sorted(fs.listdir(fs.join(base, folder))):
            if is_photo_name(name):
                path = f"{folder}/{name}"
                rows.append({"image_path": path, "image_id": path, "make": make.title(),
                             "model": f"{make.title()} {' '.join(model).title()} {year}",
                             "model_name": " ".join(model).title(), "year": year})
    return DatasetTable(dataset="vmmrdb", layout="class_folders", base=base, table=make_table(rows),
                        rejected=make_rejects(), heads=HEADS)


VMMRDB = DatasetSpec(name="vmmrdb", layouts=(Layout("class_folders", "folders named make_model_year", locate, read),),
                     heads=HEADS, default_split="stratified")


def vmmrdb_tree(root, classes=("honda_civic_2005", "honda_accord_2007", "toyota_camry_2010"), per_class=8):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for number in range(per_class):  # distinct pictures: no near-duplicates
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            pixels[:, : 8 * (index + 1)] = 40 * index
            Image.fromarray(pixels).save(root / name / f"{number:03d}.jpg", quality=90)
    return root


def test_a_third_dataset_registers_itself_and_builds(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))  # registered for this test only
    DATASETS.register("vmmrdb")(VMMRDB)
    root = vmmrdb_tree(tmp_path / "vmmrdb")
    manifest = build_dataset(build_options(root, tmp_path / "shards", dataset="vmmrdb", split="stratified",
                                           val_fraction=0.25, test_fraction=0.25))
    assert manifest["dataset"] == "vmmrdb" and manifest["layout"] == "class_folders"
    assert [name for name in manifest["heads"]] == ["make", "model", "year"]
    assert sum(entry["examples"] for entry in manifest["splits"].values()) == 24
    written = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert sorted(written["heads"]["model"]["names"].values()) == ["Honda Accord 2007", "Honda Civic 2005",
                                                         "Toyota Camry 2010"]


def test_ensure_shards_generates_once_reuses_and_builds_a_real_tree_as_it_is(tmp_path, monkeypatch):
    from data_prep.prepare import ensure_shards
    from data_prep.synthetic import GROUND_TRUTH

    shards = tmp_path / "data" / "shards"
    ensure_shards(str(shards), makes=2, models_per_make=2, images_per_model=4, bad_files=False)
    assert (tmp_path / "data" / "raw" / GROUND_TRUTH).is_file() and (shards / "manifest.json").is_file()
    stamp = (shards / "manifest.json").stat().st_mtime_ns
    ensure_shards(str(shards), makes=2, models_per_make=2, images_per_model=4)  # reused: nothing rebuilt
    assert (shards / "manifest.json").stat().st_mtime_ns == stamp
    real = vmmrdb_tree(tmp_path / "not_synthetic")  # a dataset already there is built as it is, never replaced
    built = tmp_path / "built"
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    DATASETS.register("vmmrdb")(VMMRDB)
    ensure_shards(str(built), str(real), layout="vmmrdb")
    assert json.loads((built / "manifest.json").read_text())["dataset"] == "vmmrdb"
    assert sorted(path.name for path in real.iterdir()) == ["honda_accord_2007", "honda_civic_2005",
                                                            "toyota_camry_2010"]
