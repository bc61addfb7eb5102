"""What a dataset reader is: its on-disk layouts, and automatic layout detection.

A dataset (:mod:`data_prep.datasets` registers them by name) is a :class:`DatasetSpec` with its
layouts; every layout knows how to *locate* its base folder below the root the user gave (``None``
when it is not there) and how to *read* it into a :class:`~data_prep.table.DatasetTable`.
``locate_layout`` tries the layouts in order, or the one forced with ``--layout``, and otherwise
fails with what it looked for and what the root contains.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple

from common import fs
from common.errors import UserError, describe_choices
from data_prep.table import DatasetTable


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """Reader settings that change labels: ``clean_names`` maps CompCars make misspellings."""

    clean_names: bool = True


@dataclasses.dataclass(frozen=True)
class Layout:
    """One on-disk arrangement of a dataset.

    ``locate(root)`` returns the base folder holding this layout (or ``None``); ``read(base,
    options)`` returns the table; ``looks_for`` is a short description used in error messages.
    """

    name: str
    looks_for: str
    locate: Callable[[str], Optional[str]]
    read: Callable[[str, ReadOptions], DatasetTable]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its layouts (tried in order), its label heads and its natural default split."""

    name: str
    layouts: Tuple[Layout, ...]
    heads: Tuple[str, ...]
    default_split: str


def locate_layout(spec: DatasetSpec, root: str, forced: Optional[str] = None):
    """Return ``(layout, base)`` for the first layout found below ``root`` (or the forced one)."""
    layouts = {layout.name: layout for layout in spec.layouts}
    if forced is not None:
        if forced not in layouts:
            raise UserError("--layout: " + describe_choices(f"{spec.name} layout", forced, layouts))
        candidates = [layouts[forced]]
    else:
        candidates = list(spec.layouts)
    for layout in candidates:
        base = layout.locate(root)
        if base is not None:
            return layout, base
    looked = "\n".join(f"  - {layout.name}: {layout.looks_for}" for layout in candidates)
    raise UserError(
        f"no {spec.name} layout found under {root!r}.\nLooked for:\n{looked}\n"
        f"Found: {describe_folder(root)}"
    )


def describe_folder(root: str, limit: int = 12) -> str:
    """A one-line listing of a folder's top level (folders marked with ``/``) for error messages."""
    try:
        names = fs.listdir(root)
    except Exception as error:  # unreadable folder: say so rather than fail while failing
        return f"(cannot list: {error})"
    if not names:
        return "an empty folder"
    shown = [name + ("/" if fs.isdir(fs.join(root, name)) else "") for name in names[:limit]]
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(shown) + more


def first_existing(root: str, candidates, predicate=fs.isdir) -> Optional[str]:
    """The first ``root/candidate`` for which ``predicate`` holds, or ``None``."""
    for candidate in candidates:
        path = fs.join(root, candidate) if candidate else root
        if predicate(path):
            return path
    return None
