"""Heads, vocabularies and integer labels.

Every head is a text column of the table (``viewpoint`` comes from the code column through the
dataset's code → name table). Vocabularies are the sorted distinct names (case-insensitive order,
ties broken by the exact spelling), so the same data gives the same ids on every run. Unknown
values (``None``) become label ``-1``, which the training losses mask out.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import pandas as pd

from data_prep.table import DatasetTable

UNKNOWN = -1


def head_values(data: DatasetTable, head: str) -> pd.Series:
    """The label names of ``head`` for every row (``None`` where unknown)."""
    table = data.table
    if head == "viewpoint":
        codes = {int(code): name for code, name in data.notes.get("viewpoint_codes", {}).items()}
        return table["viewpoint"].map(lambda code: codes.get(int(code)))
    return table[head]


def sort_names(names) -> List[str]:
    """Stable vocabulary order: case-insensitive, then exact spelling."""
    return sorted({str(name) for name in names}, key=lambda name: (name.casefold(), name))


def make_vocabularies(data: DatasetTable, heads: Sequence[str]) -> Dict[str, List[str]]:
    """``{head: [name of id 0, name of id 1, …]}`` over the known values of each head."""
    return {head: sort_names(head_values(data, head).dropna()) for head in heads}


def encode_labels(data: DatasetTable, vocabularies: Dict[str, List[str]]) -> pd.DataFrame:
    """Integer ids per head (``-1`` for unknown) as columns named like the heads."""
    encoded = {}
    for head, names in vocabularies.items():
        index = {name: position for position, name in enumerate(names)}
        encoded[head] = head_values(data, head).map(lambda value: index.get(value, UNKNOWN)
                                                    if value is not None else UNKNOWN).astype("int64")
    return pd.DataFrame(encoded, index=data.table.index)


def drop_rare_classes(data: DatasetTable, min_images: int, head: str = "model") -> Tuple[DatasetTable, Dict[str, int]]:
    """Drop rows whose ``head`` class has fewer than ``min_images`` images (as the reports did).

    Returns the reduced table and ``{class name: image count}`` of what was dropped.
    """
    if min_images <= 1:
        return data, {}
    counts = data.table[head].value_counts()
    rare = counts[counts < min_images]
    if rare.empty:
        return data, {}
    keep = ~data.table[head].isin(rare.index)
    reduced = data.table.loc[keep].reset_index(drop=True)
    dropped = {str(name): int(count) for name, count in sorted(rare.items())}
    return dataclasses.replace(data, table=reduced), dropped


def hierarchy(labels: pd.DataFrame, parent: str = "model", agreement: float = 0.99) -> Dict[str, List[int]]:
    """For each other head, the class each ``parent`` class belongs to (model → make, type, year).

    Kept only where it is a function of the parent class (at least ``agreement`` of the known rows
    agree): Stanford's classes fix make, type and year; CompCars' model ids fix make and type but not
    the year. Parent classes without a known value map to -1.
    """
    if parent not in labels:
        return {}
    result = {}
    for head in labels.columns:
        if head == parent:
            continue
        known = labels[(labels[parent] >= 0) & (labels[head] >= 0)]
        if known.empty:
            continue
        modes = known.groupby(parent)[head].agg(lambda values: values.value_counts().index[0])
        agree = (known[head].to_numpy() == modes.loc[known[parent]].to_numpy()).mean()
        if agree >= agreement:
            size = int(labels[parent].max()) + 1
            result[head] = [int(modes.get(index, -1)) for index in range(size)]
    return result


def class_counts(labels: pd.DataFrame, vocabularies: Dict[str, List[str]]) -> Dict[str, dict]:
    """Per head: images per class id (a list aligned with the vocabulary) and the unknown count."""
    result = {}
    for head, names in vocabularies.items():
        column = labels[head]
        counts = column[column >= 0].value_counts()
        result[head] = {"per_class": [int(counts.get(index, 0)) for index in range(len(names))],
                        "unknown": int((column < 0).sum())}
    return result

