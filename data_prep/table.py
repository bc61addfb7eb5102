"""The uniform table every dataset reader returns: one row per image, the same columns everywhere.

Columns (``None`` means unknown):

==============  =============================================================================
image_path      path of the image relative to the dataset base folder, ``/``-separated
image_id        unique, stable id (the relative path; Stanford file names repeat across splits)
source_split    the split the dataset itself assigns (``train``/``test``) or ``None``
make            make name (``"Aston Martin"``)
model           label of the ``model`` head: Stanford's class name, CompCars' "make model"
model_name      the model part alone (``"V8 Vantage"``)
year            four-digit year as text, or ``None``
type            body type (``"Sedan"``, ``"SUV"``, …), or ``None``
viewpoint       the dataset's viewpoint code (CompCars 1…5), ``-1`` when unknown
bbox_x1 … y2    bounding box in pixel coordinates exactly as the annotation gives them (1-based)
class_id        the dataset's own class id (Stanford 1…196, CompCars model id)
==============  =============================================================================
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List

import pandas as pd

from common import fs

COLUMNS = (
    "image_path", "image_id", "source_split", "make", "model", "model_name", "year", "type",
    "viewpoint", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class_id",
)
BBOX_COLUMNS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
TEXT_COLUMNS = ("image_path", "image_id", "source_split", "make", "model", "model_name", "year", "type")
REJECT_COLUMNS = ("image_id", "stage", "reason")
UNKNOWN_VIEWPOINT = -1


@dataclasses.dataclass
class DatasetTable:
    """What a reader returns: the table plus where it came from and what was skipped while reading.

    ``base`` is the folder ``image_path`` is relative to; ``heads`` the label heads this dataset
    provides; ``notes`` free-form facts recorded in the manifest (e.g. the make-name corrections).
    """

    dataset: str
    layout: str
    base: str
    table: pd.DataFrame
    rejected: pd.DataFrame
    heads: tuple
    notes: dict = dataclasses.field(default_factory=dict)


def make_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Build a table with exactly :data:`COLUMNS` (missing keys become unknown) and stable dtypes."""
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["viewpoint"] = frame["viewpoint"].fillna(UNKNOWN_VIEWPOINT).astype("int64")
    for column in BBOX_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    frame["class_id"] = frame["class_id"].astype("Int64")
    return frame


def make_rejects(rows: Iterable[dict] = ()) -> pd.DataFrame:
    """A rejection table (``image_id``, ``stage``, ``reason``); ids shown printable (non-UTF-8 bytes as ``\\xNN``)."""
    frame = pd.DataFrame(list(rows), columns=list(REJECT_COLUMNS))
    frame["image_id"] = [fs.printable_name(str(image_id)) for image_id in frame["image_id"]]
    return frame


def check_unique_ids(frame: pd.DataFrame) -> None:
    """Fail loudly if a reader produced duplicate image ids (that would be a reader bug)."""
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if len(duplicated):
        raise AssertionError(f"reader produced duplicate image ids, e.g. {list(duplicated[:3])}")


def summarize_rejects(rejected: pd.DataFrame) -> Dict[str, int]:
    """Count rejections per reason, most frequent first."""
    if rejected.empty:
        return {}
    counts = rejected["reason"].map(reason_category).value_counts()
    return {str(reason): int(count) for reason, count in counts.items()}


def reason_category(reason: str) -> str:
    """The part of a reason before ``':'`` (details such as file sizes vary per image)."""
    return str(reason).split(":", 1)[0]


def concat_rejects(parts: List[pd.DataFrame]) -> pd.DataFrame:
    parts = [part for part in parts if part is not None and len(part)]
    if not parts:
        return make_rejects()
    return pd.concat(parts, ignore_index=True)[list(REJECT_COLUMNS)]
