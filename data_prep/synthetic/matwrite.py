"""Write MAT v5 files with the same variables, field order and per-element types as the originals."""
from __future__ import annotations

import io
from typing import Dict, List, Sequence

import numpy as np

from common import fs


def matlab_int(value: int) -> np.ndarray:
    """A ``(1, 1)`` integer of the smallest unsigned type, as the devkit stores numbers."""
    value = int(value)
    return np.array([[value]], dtype=np.uint8 if value < 256 else np.uint16)


def struct_array(rows: Sequence[Dict[str, object]], fields: Sequence[str]) -> np.ndarray:
    """A ``(1, N)`` struct array: ints become ``(1, 1)`` uint8/uint16, strings char arrays."""
    array = np.zeros((1, len(rows)), dtype=[(field, "O") for field in fields])
    for index, row in enumerate(rows):
        for field in fields:
            value = row[field]
            array[0, index][field] = value if isinstance(value, str) else matlab_int(value)
    return array


def cell_row(values: Sequence[str]) -> np.ndarray:
    """A ``(1, N)`` cell array of strings (``class_names``, ``types``)."""
    array = np.empty((1, len(values)), dtype=object)
    for index, value in enumerate(values):
        array[0, index] = value
    return array


def cell_column(values: List[object]) -> np.ndarray:
    """An ``(N, 1)`` cell array; ``None`` becomes an empty cell (CompCars' unused model ids)."""
    array = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        array[index, 0] = np.zeros((0, 0)) if value is None else value
    return array


def save_mat(path: str, variables: Dict[str, np.ndarray]) -> None:
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables, format="5")
    fs.write_bytes_atomic(path, buffer.getvalue())
