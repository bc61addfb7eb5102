"""Data that is ready to train on: a synthetic dataset generated if missing, then its shards built.

The one place "generate the synthetic data if missing, then build the shards" is written: the run
plan (``data.prepare``, the demo), the notebooks' smoke mode and the benchmarks call it, and reuse
what an earlier call made.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from common import fs
from data_prep.build import build_dataset
from data_prep.manifest import MANIFEST
from data_prep.options import BuildOptions
from data_prep.synthetic import GROUND_TRUTH, generate


def ensure_synthetic(raw: str, layout: str = "stanford_cars", variant: Optional[str] = None, makes: int = 4,
                     models_per_make: int = 3, images_per_model: int = 12, seed: int = 0, bad_files: bool = True,
                     size: Optional[Tuple[int, int]] = None, announce: bool = False) -> str:
    """The synthetic dataset at ``raw``: generated when it holds none, else reused; returns ``raw``."""
    if not fs.exists(fs.join(raw, GROUND_TRUTH)):
        truth = generate(layout, raw, variant, makes=makes, models_per_make=models_per_make,
                         images_per_model=images_per_model, seed=seed, bad_files=bad_files, size=size)
        if announce:
            print(f"  synthetic {layout} dataset: {truth['images']} images, {len(truth['classes'])} classes → {raw}")
    return raw


def ensure_shards(shards: str, raw: Optional[str] = None, layout: str = "stanford_cars", split: str = "stratified",
                  max_side: Optional[int] = None, rebuild: bool = False, announce: bool = False,
                  build: Optional[dict] = None, **synthetic) -> str:
    """Shards at ``shards``, built from the dataset at ``raw`` (default: ``raw`` beside the shards
    folder; a synthetic one is generated there first when it is missing or empty, with
    ``synthetic``'s :func:`ensure_synthetic` arguments) unless they exist already (``rebuild``: build
    them again). ``build``: further
    :class:`BuildOptions`. Returns ``shards``."""
    if fs.exists(fs.join(shards, MANIFEST)) and not rebuild:
        return shards
    raw = raw or os.path.join(os.path.dirname(os.path.normpath(shards)) or ".", "raw")
    if announce:
        print(f"dataset not found in {shards}: creating it (data.prepare)")
    if not fs.isdir(raw) or not fs.listdir(raw):  # else a dataset is there already (synthetic or real): built as is
        ensure_synthetic(raw, layout, announce=announce, **synthetic)
    build_dataset(BuildOptions(dataset=layout, root=raw, out=shards, split=split, max_side=max_side,
                               progress=False, accept_rejects=True, overwrite=True, **(build or {})))
    return shards
