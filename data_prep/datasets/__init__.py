"""The dataset families, one folder each: its readers (every on-disk layout), its class names and its
synthetic twin, registered by the folder's ``__init__`` in :data:`DATASETS` (``--dataset``) and in
:data:`~data_prep.synthetic.layouts.SYNTHETIC` (``python -m data_prep.synthetic --layout``).
Adding a dataset means adding a folder here and its name below (see ``docs/data.md``, "Adding a
dataset").
"""
from __future__ import annotations

from data_prep.datasets import compcars, stanford_cars  # noqa: F401  (each registers itself)
from data_prep.datasets.registry import DATASETS, read_dataset

__all__ = ["DATASETS", "read_dataset"]
