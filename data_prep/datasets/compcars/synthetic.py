"""Synthetic CompCars (web-nature): ``image/``, ``label/``, ``misc/``, ``train_test_split/``.

Make ids index ``make_names`` (with two unused trailing entries); model ids are sparse with empty
``model_names`` cells in between, as in the real file. A few images sit in ``unknown`` and ``5008``
year folders; one model has body type 0 (unknown) in ``attributes.txt``; the official
classification split lists about two thirds of the models.
"""
from __future__ import annotations

import posixpath
from typing import Dict, List, Sequence

import numpy as np

from common import fs
from data_prep.synthetic.catalog import COMPCARS_TYPES, CarClass
from data_prep.synthetic.generate import Picture
from data_prep.synthetic.matwrite import cell_column, cell_row, save_mat

VARIANTS = ("root", "data", "data/data")
VIEWPOINTS = (1, 2, 3, 3, 4, 5, -1)


def model_ids(classes: Sequence[CarClass]) -> List[int]:
    """Sparse, global model ids (gaps in between, like CompCars' 1…2004 for 1,716 models)."""
    return [1 + 3 * index + index % 2 for index in range(len(classes))]


def write_misc(base: str, classes: Sequence[CarClass], ids: List[int]) -> None:
    misc = fs.join(base, "misc")
    fs.makedirs(misc)
    makes = sorted({(car.make_index, car.make) for car in classes})
    make_names = [name for _, name in makes] + ["Unused Make A", "Unused Make B"]
    model_names: List[object] = [None] * (max(ids) + 2)
    for car, model_id in zip(classes, ids):
        model_names[model_id - 1] = car.model
    save_mat(fs.join(misc, "make_model_name.mat"),
             {"make_names": cell_column(make_names), "model_names": cell_column(model_names)})
    save_mat(fs.join(misc, "car_type.mat"), {"types": cell_row([name for name, _ in COMPCARS_TYPES])})
    lines = ["model_id maximum_speed displacement door_number seat_number type"]
    type_ids = {name: index + 1 for index, (name, _) in enumerate(COMPCARS_TYPES)}
    for position, (car, model_id) in enumerate(zip(classes, ids)):
        type_id = 0 if position == len(classes) - 1 else type_ids[car.body]  # last model: type unknown
        lines.append(f"{model_id} {180 + 5 * position} {1.4 + 0.1 * (position % 8):.1f} 4 5 {type_id}")
    fs.write_text_atomic(fs.join(misc, "attributes.txt"), "\n".join(lines) + "\n")


def year_folder(car: CarClass, rng) -> str:
    draw = rng.random()
    return "unknown" if draw < 0.05 else "5008" if draw < 0.07 else car.year


def write_compcars(root: str, variant: str, classes: Sequence[CarClass], pictures: Sequence[Picture],
                   seed: int, style=None) -> Dict[int, str]:
    """Write the dataset; return ``{picture index: image path relative to the base}`` (``style`` is
    Stanford's Kaggle CSV style, which CompCars has no use for)."""
    base = root if variant == "root" else fs.join(root, *variant.split("/"))
    rng = np.random.default_rng(seed + 11)
    ids = model_ids(classes)
    write_misc(base, classes, ids)
    listed_classes = {index for index in range(len(classes)) if index % 3 != 2}
    listed_classes |= {p.class_index for p in pictures if p.bad_kind == "missing"}
    split_lines: Dict[str, List[str]] = {"train": [], "test": []}
    paths = {}
    for index, picture in enumerate(pictures):
        car = classes[picture.class_index]
        relative = posixpath.join(str(car.make_index + 1), str(ids[picture.class_index]), year_folder(car, rng),
                                  "".join(rng.choice(list("0123456789abcdef"), 14)) + ".jpg")
        if picture.bad_kind != "missing":
            fs.makedirs(fs.join(base, "image", posixpath.dirname(relative)))
            fs.write_bytes_atomic(fs.join(base, "image", relative), picture.data)
        label = fs.join(base, "label", posixpath.splitext(relative)[0] + ".txt")
        fs.makedirs(fs.join(base, "label", posixpath.dirname(relative)))
        x1, y1, x2, y2 = picture.bbox
        fs.write_text_atomic(label, f"{picture.viewpoint}\n1\n{x1} {y1} {x2} {y2}\n")
        if picture.class_index in listed_classes:
            split_lines["train" if rng.random() < 0.5 else "test"].append(relative)
        paths[index] = "image/" + relative
    folder = fs.join(base, "train_test_split", "classification")
    fs.makedirs(folder)
    for split, lines in split_lines.items():
        fs.write_text_atomic(fs.join(folder, f"{split}.txt"), "\n".join(sorted(lines)) + "\n")
    return paths
