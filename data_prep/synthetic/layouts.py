"""The registry of synthetic datasets: each dataset family's folder registers its twin here (the
variants of its layout, its class catalogue, its viewpoints, its writer)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Tuple

from common.registry import Registry


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """How to make one dataset: its variants (the first is the default), its class catalogue, the
    viewpoints its pictures are drawn from and the writer of its on-disk layout."""

    variants: Tuple[str, ...]
    classes: Callable
    viewpoints: Tuple[int, ...]
    write: Callable


@dataclasses.dataclass(frozen=True)
class KaggleStyle:
    """How the Kaggle re-uploads differ: CSV header, CRLF line endings, folder name for ``/``."""

    header: bool = False
    crlf: bool = False
    folder_style: str = "hyphen"


SYNTHETIC: Registry[SyntheticDataset] = Registry("synthetic dataset", where="--layout")
