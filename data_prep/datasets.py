"""The datasets by name (``--dataset``) and reading one into the uniform table.

Each dataset is a :class:`~data_prep.readers.DatasetSpec`: its on-disk layouts in detection order,
its label heads and its natural split. The reader modules define the layouts; this module puts
them together, so no reader needs to import another one to register itself.
"""
from __future__ import annotations

from typing import Optional

from common import fs
from common.errors import UserError
from common.registry import Registry
from data_prep import compcars, stanford_cars, stanford_kaggle
from data_prep.readers import DatasetSpec, ReadOptions, locate_layout
from data_prep.table import DatasetTable, check_unique_ids

DATASETS: Registry[DatasetSpec] = Registry("dataset", where="--dataset")

DATASETS.register("stanford_cars")(DatasetSpec(
    name="stanford_cars",
    layouts=(stanford_cars.DEVKIT, stanford_cars.TORCHVISION, stanford_cars.CAR_IMS, stanford_kaggle.KAGGLE),
    heads=stanford_cars.HEADS,
    default_split="official",
))
DATASETS.register("compcars")(DatasetSpec(
    name="compcars", layouts=(compcars.WEB_NATURE,), heads=compcars.HEADS, default_split="stratified"))


def read_dataset(name: str, root: str, layout: Optional[str] = None,
                 options: ReadOptions = ReadOptions()) -> DatasetTable:
    """Read dataset ``name`` below ``root`` into the uniform table (layout detected unless given)."""
    spec = DATASETS.get(name)
    if not fs.isdir(root):
        raise UserError(f"--root: {root!r} is not a folder (expected the {name} dataset root)")
    chosen, base = locate_layout(spec, root, layout)
    result = chosen.read(base, options)
    check_unique_ids(result.table)
    return result
