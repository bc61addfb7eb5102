"""The registry of datasets by name (``--dataset``) and reading one into the uniform table.

Each dataset is a :class:`~data_prep.readers.DatasetSpec` — its on-disk layouts in detection order,
its label heads and its natural split — registered by its own folder under ``data_prep/datasets/``.
"""
from __future__ import annotations

from typing import Optional

from common import fs
from common.errors import UserError
from common.registry import Registry
from data_prep.readers import DatasetSpec, ReadOptions, locate_layout
from data_prep.table import DatasetTable, check_unique_ids

DATASETS: Registry[DatasetSpec] = Registry("dataset", where="--dataset")


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
