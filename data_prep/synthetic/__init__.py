"""A small, learnable car dataset written in the exact on-disk layouts of the real ones.

``generate(...)`` draws the pictures (:mod:`.draw`), adds near-duplicates and a handful of bad
files (:mod:`.generate`), writes them in the chosen layout (each dataset family's twin, ``data_prep/datasets/*/synthetic.py``) and
records the ground truth in ``SYNTHETIC.json`` (classes, bad files, near-duplicate pairs) so tests
can check the pipeline against it. Command line: ``python -m data_prep.synthetic --help``.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import data_prep.datasets  # noqa: F401  (each dataset family registers its synthetic twin)
from common import fs
from common.errors import UserError, describe_choices
from data_prep.synthetic.generate import render, spoil
from data_prep.synthetic.layouts import SYNTHETIC, KaggleStyle

GROUND_TRUTH = "SYNTHETIC.json"
PARTIAL = ".partial"  # the folder a dataset is written to before it is renamed into place


def generate(layout: str, out: str, variant: Optional[str] = None, makes: int = 4, models_per_make: int = 3,
             images_per_model: int = 12, seed: int = 0, bad_files: bool = True,
             size: Optional[Tuple[int, int]] = None, csv_header: bool = False, crlf: bool = False,
             folder_style: str = "hyphen", label_conflicts: int = 0, lookalikes: int = 0) -> dict:
    """Write a synthetic dataset to ``out`` and return its ground truth (also in ``SYNTHETIC.json``)."""
    dataset = SYNTHETIC.get(layout)
    variant = variant or dataset.variants[0]
    if variant not in dataset.variants:
        raise UserError("--variant: " + describe_choices(f"{layout} variant", variant, dataset.variants))
    if min(makes, models_per_make, images_per_model) < 1:
        raise UserError("--makes, --models-per-make and --images-per-model must be at least 1")
    classes = dataset.classes(makes, models_per_make, seed)
    pictures = render(classes, images_per_model, seed, viewpoints=dataset.viewpoints, size=size,
                      label_conflicts=label_conflicts, lookalikes=lookalikes)
    if bad_files:
        spoil(pictures, seed)
    target = writing_folder(out)
    paths = dataset.write(target, variant, classes, pictures, seed, KaggleStyle(csv_header, crlf, folder_style))
    truth = ground_truth(layout, variant, classes, pictures, paths)
    fs.write_text_atomic(fs.join(target, GROUND_TRUTH), json.dumps(truth, indent=1))
    if target != out:  # complete: it takes the place of the folder (and of an earlier synthetic dataset there)
        fs.remove_tree(out)
        fs.rename(target, out)
    return truth


def writing_folder(out: str) -> str:
    """Where ``generate`` writes: a new or empty ``out`` or one holding an earlier synthetic dataset
    (replaced once the new one is complete) — never a folder of other files (a real dataset, say).
    Locally the dataset is written beside ``out`` and renamed into place, so a kill leaves no half."""
    if fs.exists(out) and not fs.isdir(out):
        raise UserError(f"--out {out} is a file; the synthetic dataset is a folder")
    present = fs.listdir(out) if fs.isdir(out) else []
    if present and GROUND_TRUTH not in present:
        shown = ", ".join(sorted(present)[:4]) + (", …" if len(present) > 4 else "")
        raise UserError(f"--out {out} is not empty and holds no synthetic dataset (it holds {shown}); choose an "
                        "empty or new folder (nothing was changed)")
    if fs.is_remote(out):
        fs.makedirs(out)
        return out
    partial = out.rstrip("/" + os.sep) + PARTIAL
    fs.remove_tree(partial)  # what a killed run left
    fs.makedirs(partial)
    return partial


def ground_truth(layout, variant, classes, pictures, paths) -> dict:
    return {
        "layout": layout,
        "variant": variant,
        "classes": [{"make": c.make, "model": c.model, "type": c.body, "year": c.year,
                     "name": c.stanford_name} for c in classes],
        "images": len(pictures),
        "bad_files": {p.bad_kind: paths[i] for i, p in enumerate(pictures) if p.bad_kind},
        "near_duplicates": [[paths[p.duplicate_of], paths[i]] for i, p in enumerate(pictures)
                            if p.duplicate_of is not None],
        "label_conflicts": [[paths[p.duplicate_of], paths[i]] for i, p in enumerate(pictures)
                            if p.duplicate_of is not None and p.class_index != pictures[p.duplicate_of].class_index],
        "lookalikes": [[paths[p.lookalike_of], paths[i]] for i, p in enumerate(pictures) if p.lookalike_of is not None],
        "class_of": {paths[i]: p.class_index for i, p in enumerate(pictures)},
        "bbox_of": {paths[i]: list(p.bbox) for i, p in enumerate(pictures)},
    }
