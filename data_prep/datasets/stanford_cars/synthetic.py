"""Synthetic Stanford Cars in every supported layout: devkit (also nested as on Kaggle),
torchvision, single-file ``cars_annos.mat`` + ``car_ims/``, and Kaggle class folders with CSVs."""
from __future__ import annotations

import posixpath
from typing import Callable, Dict, List, Sequence

import numpy as np

from common import fs
from common.registry import Registry
from data_prep.synthetic.catalog import CarClass
from data_prep.synthetic.generate import Picture
from data_prep.synthetic.layouts import KaggleStyle
from data_prep.synthetic.matwrite import cell_row, save_mat, struct_array

BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
VARIANTS: Registry[Callable] = Registry("stanford_cars variant", where="--variant")  # filled below
DEFAULT_VARIANT = "devkit"
FOLDER_STYLES = {"hyphen": "-", "none": "", "underscore": "_"}


def assign_splits(pictures: Sequence[Picture], seed: int) -> List[str]:
    """About half of each class in train, half in test (like Stanford's 8,144 / 8,041)."""
    rng = np.random.default_rng(seed + 3)
    return ["train" if rng.random() < 0.5 else "test" for _ in pictures]


def numbered(pictures: Sequence[Picture], splits: Sequence[str], seed: int, digits: int = 5) -> List[str]:
    """Per split, file names ``00001.jpg …`` in shuffled order (the real numbering ignores class)."""
    rng = np.random.default_rng(seed + 5)
    names = [""] * len(pictures)
    for split in ("train", "test"):
        members = [index for index, value in enumerate(splits) if value == split]
        for number, index in enumerate(rng.permutation(members), start=1):
            names[int(index)] = f"{number:0{digits}d}.jpg"
    return names


def annotation(picture: Picture, fname: str, with_class: bool = True) -> Dict[str, object]:
    row = dict(zip(BOX_FIELDS, picture.bbox), fname=fname)
    if with_class:
        row["class"] = picture.class_index + 1
    return row


def write_picture(folder: str, name: str, picture: Picture) -> None:
    if picture.bad_kind != "missing":
        fs.write_bytes_atomic(fs.join(folder, name), picture.data)


def write_devkit(root: str, classes: Sequence[CarClass], pictures, splits, names, nested: bool) -> Dict[str, str]:
    devkit = fs.join(root, "car_devkit", "devkit") if nested else fs.join(root, "devkit")
    fs.makedirs(devkit)
    save_mat(fs.join(devkit, "cars_meta.mat"), {"class_names": cell_row([c.stanford_name for c in classes])})
    paths = {}
    for split in ("train", "test"):
        folder = fs.join(root, f"cars_{split}", f"cars_{split}") if nested else fs.join(root, f"cars_{split}")
        fs.makedirs(folder)
        members = sorted((names[i], i) for i, value in enumerate(splits) if value == split)
        rows = [annotation(pictures[i], name) for name, i in members]
        fields = BOX_FIELDS + ("class", "fname")
        if split == "train":
            save_mat(fs.join(devkit, "cars_train_annos.mat"), {"annotations": struct_array(rows, fields)})
        else:
            save_mat(fs.join(devkit, "cars_test_annos.mat"),
                     {"annotations": struct_array(rows, BOX_FIELDS + ("fname",))})
            save_mat(fs.join(root, "cars_test_annos_withlabels.mat"), {"annotations": struct_array(rows, fields)})
        prefix = posixpath.join(f"cars_{split}", f"cars_{split}") if nested else f"cars_{split}"
        for name, i in members:
            write_picture(folder, name, pictures[i])
            paths[i] = posixpath.join(prefix, name)
    return paths


def write_car_ims(root: str, classes: Sequence[CarClass], pictures, splits) -> Dict[str, str]:
    folder = fs.join(root, "car_ims")
    fs.makedirs(folder)
    order = sorted(range(len(pictures)), key=lambda i: (pictures[i].class_index, i))  # ordered by class
    rows, paths = [], {}
    for number, i in enumerate(order, start=1):
        path = f"car_ims/{number:06d}.jpg"
        rows.append(dict(zip(BOX_FIELDS, pictures[i].bbox), relative_im_path=path,
                         **{"class": pictures[i].class_index + 1, "test": int(splits[i] == "test")}))
        write_picture(folder, f"{number:06d}.jpg", pictures[i])
        paths[i] = path
    fields = ("relative_im_path",) + BOX_FIELDS + ("class", "test")
    save_mat(fs.join(root, "cars_annos.mat"), {"annotations": struct_array(rows, fields),
                                               "class_names": cell_row([c.stanford_name for c in classes])})
    return paths


def csv_text(rows: List[List[object]], header: List[str], crlf: bool) -> str:
    lines = ([",".join(header)] if header else []) + [",".join(str(v) for v in row) for row in rows]
    ending = "\r\n" if crlf else "\n"
    return ending.join(lines) + ending


def write_kaggle(root: str, classes: Sequence[CarClass], pictures, splits, names, header: bool, crlf: bool,
                 folder_style: str = "hyphen") -> Dict[str, str]:
    replacement = FOLDER_STYLES[folder_style]
    paths = {}
    for split in ("train", "test"):
        members = sorted((names[i], i) for i, value in enumerate(splits) if value == split)
        rows = []
        for name, i in members:
            picture = pictures[i]
            folder_name = classes[picture.class_index].stanford_name.replace("/", replacement)
            folder = fs.join(root, "car_data", "car_data", split, folder_name)
            fs.makedirs(folder)
            write_picture(folder, name, picture)
            rows.append([name, *picture.bbox, picture.class_index + 1])
            paths[i] = posixpath.join("car_data/car_data", split, folder_name, name)
        titles = ["image_name", "x_min", "y_min", "x_max", "y_max", "label"] if header else []
        fs.write_text_atomic(fs.join(root, f"anno_{split}.csv"), csv_text(rows, titles, crlf))
    if header:
        name_rows = [[index + 1, car.stanford_name] for index, car in enumerate(classes)]
    else:
        name_rows = [[car.stanford_name] for car in classes]
    fs.write_text_atomic(fs.join(root, "names.csv"),
                         csv_text(name_rows, ["class_id", "class_name"] if header else [], crlf))
    return paths


@VARIANTS.register("devkit")
def _devkit(root, classes, pictures, splits, names, style: KaggleStyle):
    return write_devkit(root, classes, pictures, splits, names, nested=False)


@VARIANTS.register("devkit_nested")
def _devkit_nested(root, classes, pictures, splits, names, style: KaggleStyle):
    return write_devkit(root, classes, pictures, splits, names, nested=True)


@VARIANTS.register("torchvision")
def _torchvision(root, classes, pictures, splits, names, style: KaggleStyle):
    return write_devkit(fs.join(root, "stanford_cars"), classes, pictures, splits, names, nested=False)


@VARIANTS.register("car_ims")
def _car_ims(root, classes, pictures, splits, names, style: KaggleStyle):
    return write_car_ims(root, classes, pictures, splits)


@VARIANTS.register("kaggle")
def _kaggle(root, classes, pictures, splits, names, style: KaggleStyle):
    return write_kaggle(root, classes, pictures, splits, names, style.header, style.crlf, style.folder_style)


def write_stanford(root: str, variant: str, classes, pictures, seed: int, style: KaggleStyle = KaggleStyle()):
    """Write the dataset; return ``{picture index: image path relative to the layout's base}``."""
    splits = assign_splits(pictures, seed)
    return VARIANTS.get(variant)(root, classes, pictures, splits, numbered(pictures, splits, seed), style)
