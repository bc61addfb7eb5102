"""Read MATLAB v5 files (Stanford Cars devkit, CompCars misc) into plain Python values.

The devkit stores every number as a ``(1, 1)`` array whose dtype changes from row to row
(uint8 or uint16), so values are converted with ``int(v[0, 0])`` before any arithmetic: adding two
uint8 arrays would silently wrap around at 256.
"""
from __future__ import annotations

import io
from typing import Dict, List, Optional

import numpy as np

from common import fs
from common.errors import UserError


def load_mat(path: str) -> Dict[str, np.ndarray]:
    """Load a MAT file (local or remote) with scipy's defaults; errors name the file and the fix."""
    from scipy.io import loadmat

    try:
        data = fs.read_bytes(path)
    except (OSError, IOError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    try:
        return loadmat(io.BytesIO(data))
    except NotImplementedError:
        raise UserError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; the official "
            "files are v5 — re-download them or re-save with MATLAB's save(..., '-v7')"
        ) from None
    except Exception as error:  # scipy raises ValueError/TypeError/… on damaged files
        raise UserError(f"{path} is not a readable MATLAB file ({error})") from None


def require_key(mat: dict, key: str, path: str) -> np.ndarray:
    """Return ``mat[key]`` or fail with the keys the file does have."""
    if key not in mat:
        found = sorted(name for name in mat if not name.startswith("__"))
        raise UserError(f"{path} has no variable {key!r} (found: {', '.join(found) or 'nothing'})")
    return mat[key]


def scalar(value) -> Optional[object]:
    """Convert one struct-array cell to a Python ``int``/``float``/``str`` (``None`` when empty)."""
    array = np.asarray(value)
    if array.size == 0:
        return None
    if array.dtype.kind in "US":
        return str(array.reshape(-1)[0]).strip()
    item = array.reshape(-1)[0]
    if array.dtype.kind in "iub":
        return int(item)
    if array.dtype.kind == "f":
        return int(item) if float(item).is_integer() else float(item)
    if array.dtype.kind == "O":
        return scalar(item)
    return item


def struct_records(mat: dict, key: str, path: str) -> List[dict]:
    """A MATLAB struct array ``mat[key]`` as a list of ``{field: python value}`` dicts."""
    array = require_key(mat, key, path)
    if array.dtype.names is None:
        raise UserError(f"{path}: {key!r} is not a struct array (dtype {array.dtype})")
    fields = array.dtype.names
    return [{field: scalar(element[field]) for field in fields} for element in array.reshape(-1)]


def struct_fields(mat: dict, key: str, path: str) -> tuple:
    """Field names of the struct array ``mat[key]``, in file order."""
    return tuple(require_key(mat, key, path).dtype.names or ())


def cell_strings(mat: dict, key: str, path: str) -> List[Optional[str]]:
    """A MATLAB cell array of strings as a list; empty cells become ``None``."""
    array = require_key(mat, key, path)
    return [scalar(cell) for cell in array.reshape(-1)]
