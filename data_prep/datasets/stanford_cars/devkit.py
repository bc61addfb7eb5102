"""Stanford Cars (Cars196) reader: devkit, torchvision and single-file ``cars_annos.mat`` layouts.

The Kaggle class-folder layout lives in :mod:`data_prep.datasets.stanford_cars.kaggle`. Facts relied on here
(``../shared/datasets.md`` §1): class ids are 1-based into ``cars_meta.mat``'s ``class_names``;
``cars_test_annos.mat`` has no labels (they are in ``cars_test_annos_withlabels.mat``); train and
test file names collide, so image ids keep the folder; boxes are 1-based pixel coordinates.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from common import fs
from common.errors import UserError
from data_prep.matfile import cell_strings, load_mat, struct_fields, struct_records
from data_prep.readers import Layout, ReadOptions, first_existing
from data_prep.datasets.stanford_cars.names import CarName, parse_class_name
from data_prep.table import DatasetTable, make_rejects, make_table

DATASET = "stanford_cars"
HEADS = ("make", "model", "year", "type")
DEVKIT_DIRS = ("devkit", "car_devkit/devkit", "car_devkit")
TRAIN_DIRS = ("cars_train/cars_train", "cars_train")
TEST_DIRS = ("cars_test/cars_test", "cars_test")
WITH_LABELS = "cars_test_annos_withlabels.mat"
WITH_LABELS_DIRS = ("", "devkit", "car_devkit/devkit", "labeldata", "car_devkit")
CLASS_NAMES_FILE = Path(__file__).with_name("classes.txt")


def official_class_names() -> List[str]:
    """The 196 official class names in class-id order (``cars_meta.mat``), shipped with the package."""
    return CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines()


def parse_all(class_names: Sequence[str], source: str) -> List[CarName]:
    """Parse every class name, naming the file when one does not follow the grammar."""
    parsed = []
    for name in class_names:
        try:
            parsed.append(parse_class_name(name))
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
    return parsed


def class_rows(records: Iterable[dict], split: Optional[str], class_names: Sequence[str],
               present: set) -> Tuple[list, list]:
    """Turn annotation records (with ``image_path`` relative to the base) into rows and rejections.

    ``present`` holds the relative paths found on disk (a few folder listings instead of one
    existence check per image). A record whose class is outside ``1..len(class_names)`` or whose
    file is missing is rejected with the reason.
    """
    parsed = parse_all(class_names, "class names")
    records, rejects = listed_once(records)
    rows = []
    for record in records:
        image_path = record["image_path"]
        class_id = record.get("class")
        if class_id is None or not 1 <= int(class_id) <= len(class_names):
            rejects.append({"image_id": image_path, "stage": "read",
                            "reason": f"label out of range: class {class_id} not in 1..{len(class_names)}"})
            continue
        if image_path not in present:
            rejects.append({"image_id": image_path, "stage": "read",
                            "reason": "missing file: listed in the annotations but not on disk"})
            continue
        car = parsed[int(class_id) - 1]
        rows.append({
            "image_path": image_path, "image_id": image_path, "source_split": split,
            "make": car.make, "model": class_names[int(class_id) - 1], "model_name": car.model,
            "year": car.year, "type": car.type,
            "bbox_x1": record.get("bbox_x1"), "bbox_y1": record.get("bbox_y1"),
            "bbox_x2": record.get("bbox_x2"), "bbox_y2": record.get("bbox_y2"),
            "class_id": int(class_id),
        })
    return rows, rejects


def listed_once(records: Iterable[dict]) -> Tuple[List[dict], List[dict]]:
    """Each image once: a record repeated word for word is kept once; an image listed several times
    with different labels or boxes is rejected (which one is right cannot be known)."""
    by_path: Dict[str, List[dict]] = {}
    for record in records:
        by_path.setdefault(record["image_path"], []).append(record)
    kept, rejects = [], []
    for path, listed in by_path.items():
        if all(record == listed[0] for record in listed[1:]):
            kept.append(listed[0])
        else:
            rejects.append({"image_id": path, "stage": "read", "reason": f"listed {len(listed)} times in the "
                            "annotations with different labels or boxes"})
    return kept, rejects


def in_folder(records: Iterable[dict], folder: str, key: str = "fname") -> List[dict]:
    """Copy records adding ``image_path`` = ``folder/record[key]``."""
    return [dict(record, image_path=posixpath.join(folder, str(record[key])) if folder else str(record[key]))
            for record in records]


def listed_files(base: str, folder: str) -> set:
    """Relative paths (``folder/name``) of the files in ``base/folder``; empty if it is missing."""
    path = fs.join(base, folder) if folder else base
    if not fs.isdir(path):
        return set()
    return {posixpath.join(folder, name) if folder else name for name in fs.listdir(path)}


def relative(base: str, path: str) -> str:
    return path[len(base):].strip("/\\").replace("\\", "/")


def finish(layout: str, base: str, rows: list, rejects: list, notes: Dict) -> DatasetTable:
    return DatasetTable(dataset=DATASET, layout=layout, base=base, table=make_table(rows),
                        rejected=make_rejects(rejects), heads=HEADS, notes=notes)


# --- devkit layout (official archives; also the torchvision arrangement one folder down) ---

def locate_devkit(root: str) -> Optional[str]:
    devkit = first_existing(root, DEVKIT_DIRS, lambda path: fs.exists(fs.join(path, "cars_meta.mat")))
    if devkit and first_existing(root, TRAIN_DIRS):
        return root
    return None


def locate_torchvision(root: str) -> Optional[str]:
    nested = fs.join(root, "stanford_cars")
    return nested if fs.isdir(nested) and locate_devkit(nested) else None


def test_records(base: str, devkit: str) -> List[dict]:
    """Test annotations with labels: ``cars_test_annos_withlabels.mat`` wherever it was put."""
    labelled = first_existing(base, WITH_LABELS_DIRS, lambda path: fs.exists(fs.join(path, WITH_LABELS)))
    if labelled is None:
        raise UserError(
            f"test labels not found: {WITH_LABELS} is in none of "
            f"{', '.join(repr(d or '.') for d in WITH_LABELS_DIRS)} under {base!r}. "
            "cars_test_annos.mat has no 'class' field; download the labelled file "
            "(published with the dataset's test labels) into the root or devkit/ folder"
        )
    path = fs.join(labelled, WITH_LABELS)
    mat = load_mat(path)
    if "class" not in struct_fields(mat, "annotations", path):
        raise UserError(f"{path} has no 'class' field: it is not the labelled test file")
    return struct_records(mat, "annotations", path)


def read_devkit(base: str, options: ReadOptions, layout: str = "devkit") -> DatasetTable:
    devkit = first_existing(base, DEVKIT_DIRS, lambda path: fs.exists(fs.join(path, "cars_meta.mat")))
    meta_path = fs.join(devkit, "cars_meta.mat")
    class_names = cell_strings(load_mat(meta_path), "class_names", meta_path)
    train_path = fs.join(devkit, "cars_train_annos.mat")
    train = struct_records(load_mat(train_path), "annotations", train_path)
    test = test_records(base, devkit)
    rows, rejects = [], []
    for split, records, candidates in (("train", train, TRAIN_DIRS), ("test", test, TEST_DIRS)):
        folder = relative(base, first_existing(base, candidates) or fs.join(base, candidates[-1]))
        split_rows, split_rejects = class_rows(in_folder(records, folder), split, class_names,
                                               listed_files(base, folder))
        rows += split_rows
        rejects += split_rejects
    return finish(layout, base, rows, rejects, {"bbox": "annotated"})


def read_torchvision(base: str, options: ReadOptions) -> DatasetTable:
    return read_devkit(base, options, layout="torchvision")


# --- single-file layout: cars_annos.mat + car_ims/ (6-digit names, 'test' flag per row) ---

def locate_car_ims(root: str) -> Optional[str]:
    if fs.exists(fs.join(root, "cars_annos.mat")) and fs.isdir(fs.join(root, "car_ims")):
        return root
    return None


def read_car_ims(base: str, options: ReadOptions) -> DatasetTable:
    path = fs.join(base, "cars_annos.mat")
    mat = load_mat(path)
    class_names = cell_strings(mat, "class_names", path)
    records = struct_records(mat, "annotations", path)
    present = listed_files(base, "car_ims")
    rows, rejects = [], []
    for flag, split in ((0, "train"), (1, "test")):
        chosen = [record for record in records if int(record.get("test") or 0) == flag]
        split_rows, split_rejects = class_rows(in_folder(chosen, "", key="relative_im_path"), split,
                                               class_names, present)
        rows += split_rows
        rejects += split_rejects
    return finish("car_ims", base, rows, rejects, {"bbox": "annotated"})


DEVKIT = Layout("devkit", "devkit/cars_meta.mat (or car_devkit/devkit/) with cars_train/ and cars_test/",
                locate_devkit, read_devkit)
TORCHVISION = Layout("torchvision", "stanford_cars/devkit/cars_meta.mat with stanford_cars/cars_train/",
                     locate_torchvision, read_torchvision)
CAR_IMS = Layout("car_ims", "cars_annos.mat next to car_ims/", locate_car_ims, read_car_ims)
