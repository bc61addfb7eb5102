"""Stanford Cars in class folders: Kaggle's ``car_data/car_data/{train,test}/<class name>/`` layout.

Also covers the same arrangement at ``car_data/`` or directly under the root (the newer
``train/<class>/`` re-packaging with 6-digit ``car_ims`` names). The optional CSVs next to it:

* ``anno_train.csv`` / ``anno_test.csv``: ``fname,x1,y1,x2,y2,class`` — bounding boxes and class
  ids; the originals have no header and LF endings, re-uploads add a header and CRLF (sniffed);
* ``names.csv``: one class name per line (or ``id,name``), again with or without a header.

Without ``names.csv`` the class folders are matched to the official names shipped with the package,
so ``Ram C-V Cargo Van Minivan 2012`` (a folder cannot contain ``/``) still becomes class 174,
``Ram C/V Cargo Van Minivan 2012``. Without the annotation CSVs, boxes are unknown.
"""
from __future__ import annotations

import csv
import io
import posixpath
from typing import Dict, List, Optional, Tuple

from common import fs
from common.errors import UserError
from data_prep.images import is_photo_name, not_a_photo
from data_prep.readers import Layout, ReadOptions, first_existing
from data_prep.datasets.stanford_cars.devkit import class_rows, finish, listed_files, official_class_names, relative
from data_prep.datasets.stanford_cars.names import folder_key
from data_prep.table import DatasetTable

IMAGE_ROOTS = ("car_data/car_data", "car_data", "")
SPLITS = ("train", "test")


def _has_class_folders(path: str) -> bool:
    train = fs.join(path, "train")
    return fs.isdir(train) and any(fs.isdir(fs.join(train, name)) for name in fs.listdir(train))


def locate_class_folders(root: str) -> Optional[str]:
    return root if first_existing(root, IMAGE_ROOTS, _has_class_folders) else None


def read_csv_rows(path: str) -> List[List[str]]:
    """Rows of a small CSV file, any line ending, BOM and blank lines ignored."""
    data = fs.read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text (byte {error.start + 1} is {data[error.start]:#04x}; saved as "
                        "Latin-1 or Windows-1252?): save it as UTF-8") from None
    return [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]


def _is_int(text: str) -> bool:
    try:
        int(str(text).strip())
        return True
    except ValueError:
        return False


def read_names_csv(path: str) -> List[str]:
    """Class names in class-id order from ``names.csv``: ``name`` or ``id,name`` rows, header sniffed.

    A first row whose last field does not end in a year (every class name does) is a header.
    """
    rows = read_csv_rows(path)
    if rows and not rows[0][-1].strip()[-4:].isdigit():
        rows = rows[1:]
    if rows and len(rows[0]) >= 2 and _is_int(rows[0][0]):
        rows = sorted(rows, key=lambda row: int(row[0]))
    names = [row[-1].strip() for row in rows]
    if not names:
        raise UserError(f"{path} holds no class names")
    return names


def read_annotation_csv(path: str) -> List[dict]:
    """Records ``fname, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class`` from a Kaggle annotation CSV."""
    rows = read_csv_rows(path)
    if rows and not is_photo_name(rows[0][0].strip()):
        rows = rows[1:]  # header row such as image_name,x_min,y_min,x_max,y_max,label (data rows name a photo)
    records = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 6 or not all(_is_int(cell) for cell in row[1:6]):
            raise UserError(f"{path}, data row {number}: expected 'fname,x1,y1,x2,y2,class' "
                            f"with integers, got {','.join(row)!r}")
        x1, y1, x2, y2, label = (int(cell) for cell in row[1:6])
        records.append({"fname": row[0].strip(), "bbox_x1": x1, "bbox_y1": y1, "bbox_x2": x2,
                        "bbox_y2": y2, "class": label})
    return records


def class_folders(split_dir: str, class_names: List[str]) -> Dict[int, str]:
    """Map class id → folder name, matching folders to names with :func:`folder_key`.

    A folder that matches no class name is an error that lists the unmatched folders.
    """
    by_key = {folder_key(name): class_id for class_id, name in enumerate(class_names, start=1)}
    folders = [name for name in fs.listdir(split_dir) if fs.isdir(fs.join(split_dir, name))]
    unknown = [name for name in folders if folder_key(name) not in by_key]
    if unknown:
        raise UserError(f"{split_dir}: {len(unknown)} class folder(s) match no class name, e.g. "
                        f"{unknown[:3]} (expected folders named like {class_names[0]!r})")
    return {by_key[folder_key(name)]: name for name in folders}


def names_from_folders(image_root: str) -> Tuple[List[str], str]:
    """Class names without ``names.csv``: the official 196 (with their ids) when every folder is one
    of them, otherwise the folder names themselves, sorted (ids 1…n)."""
    folders = sorted({name for split in SPLITS if fs.isdir(fs.join(image_root, split))
                      for name in fs.listdir(fs.join(image_root, split))
                      if fs.isdir(fs.join(image_root, split, name))})
    official = official_class_names()
    known = {folder_key(name) for name in official}
    if all(folder_key(folder) in known for folder in folders):
        return official, "official list shipped with data_prep"
    return folders, "class folder names"


def folder_images(base: str, prefix: str, folders: Dict[int, str]) -> Tuple[List[str], List[dict]]:
    """Relative paths of the photos in a split's class folders, and a rejection for every other file
    (hidden files such as ``.DS_Store`` aside)."""
    files = sorted(posixpath.join(prefix, folder, name) for folder in folders.values()
                   for name in fs.listdir(fs.join(base, prefix, folder)) if not name.startswith("."))
    others = [{"image_id": path, "stage": "read", "reason": not_a_photo(path)} for path in files
              if not is_photo_name(path) and not fs.isdir(fs.join(base, path))]
    return [path for path in files if is_photo_name(path)], others


def split_records(base: str, image_root: str, split: str,
                  class_names: List[str]) -> Tuple[List[dict], str, List[dict]]:
    """Records for one split: from ``anno_<split>.csv`` when present, else from the folder contents;
    plus the rejections of images in the class folders that the CSV does not list (their box is
    unknown and their label only implied by the folder: reported, never dropped silently)."""
    split_dir = fs.join(image_root, split)
    if not fs.isdir(split_dir):
        return [], "missing", []
    folders = class_folders(split_dir, class_names)
    prefix = posixpath.join(relative(base, image_root), split).lstrip("/")
    csv_path = first_existing(base, (f"anno_{split}.csv", f"car_data/anno_{split}.csv"), fs.exists)
    if csv_path is not None:
        records = read_annotation_csv(csv_path)
        for record in records:
            folder = folders.get(record["class"], folder_for(class_names, record["class"]))
            record["image_path"] = posixpath.join(prefix, folder, record["fname"])
        listed = {record["image_path"] for record in records}
        photos, others = folder_images(base, prefix, folders)
        unlisted = [{"image_id": path, "stage": "read", "reason": f"not in {posixpath.basename(csv_path)}: an "
                     "image in a class folder that the annotations do not list"}
                    for path in photos if path not in listed]
        return records, "annotated", unlisted + [other for other in others if other["image_id"] not in listed]
    by_folder = {folder: class_id for class_id, folder in folders.items()}
    photos, others = folder_images(base, prefix, folders)
    records = [{"image_path": path, "class": by_folder[posixpath.basename(posixpath.dirname(path))]}
               for path in photos]
    return records, "unknown", others


def folder_for(class_names: List[str], class_id: int) -> str:
    """Best-effort folder name for a class with no folder (its images are then reported missing)."""
    if 1 <= class_id <= len(class_names):
        return class_names[class_id - 1].replace("/", "-")
    return f"class {class_id}"


def read_class_folders(base: str, options: ReadOptions) -> DatasetTable:
    image_root = first_existing(base, IMAGE_ROOTS, _has_class_folders)
    names_path = first_existing(base, ("names.csv", "car_data/names.csv"), fs.exists)
    class_names, source = (read_names_csv(names_path), "names.csv") if names_path else names_from_folders(image_root)
    rows, rejects, boxes = [], [], {}
    for split in SPLITS:
        records, boxes[split], unlisted = split_records(base, image_root, split, class_names)
        present = set()
        for folder in {posixpath.dirname(record["image_path"]) for record in records}:
            present |= listed_files(base, folder)
        split_rows, split_rejects = class_rows(records, split, class_names, present)
        rows += split_rows
        rejects += split_rejects + unlisted
    notes = {"bbox": "annotated" if "unknown" not in boxes.values() else "unknown",
             "class_names": source}
    return finish("kaggle", base, rows, rejects, notes)


KAGGLE = Layout(
    "kaggle",
    "class folders car_data/car_data/{train,test}/<class> (or car_data/ or the root) with optional "
    "anno_train.csv, anno_test.csv, names.csv",
    locate_class_folders,
    read_class_folders,
)
