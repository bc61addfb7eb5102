"""A small, learnable car dataset written in the exact on-disk layouts of the real ones.

``generate(...)`` draws the pictures (:mod:`.draw`), adds near-duplicates and a handful of bad
files (:mod:`.generate`), writes them in the chosen layout (:mod:`.stanford`, :mod:`.compcars`) and
records the ground truth in ``SYNTHETIC.json`` (classes, bad files, near-duplicate pairs) so tests
can check the pipeline against it. Command line: ``python -m data_prep.synthetic --help``.
"""
from __future__ import annotations

import json
from typing import Optional, Tuple

from common import fs
from common.errors import UserError, describe_choices
from data_prep.synthetic import catalog, compcars, stanford
from data_prep.synthetic.generate import render, spoil

LAYOUTS = {"stanford_cars": stanford.VARIANTS, "compcars": compcars.VARIANTS}
GROUND_TRUTH = "SYNTHETIC.json"


def generate(layout: str, out: str, variant: Optional[str] = None, makes: int = 4, models_per_make: int = 3,
             images_per_model: int = 12, seed: int = 0, bad_files: bool = True,
             size: Optional[Tuple[int, int]] = None, csv_header: bool = False, crlf: bool = False,
             folder_style: str = "hyphen") -> dict:
    """Write a synthetic dataset to ``out`` and return its ground truth (also in ``SYNTHETIC.json``)."""
    if layout not in LAYOUTS:
        raise UserError("--layout: " + describe_choices("layout", layout, LAYOUTS))
    variant = variant or LAYOUTS[layout][0]
    if variant not in LAYOUTS[layout]:
        raise UserError("--variant: " + describe_choices(f"{layout} variant", variant, LAYOUTS[layout]))
    if min(makes, models_per_make, images_per_model) < 1:
        raise UserError("--makes, --models-per-make and --images-per-model must be at least 1")
    if layout == "stanford_cars":
        classes = catalog.stanford_classes(makes, models_per_make, seed)
        pictures = render(classes, images_per_model, seed, viewpoints=(3, 3, 4, 5), size=size)
    else:
        classes = catalog.compcars_classes(makes, models_per_make, seed)
        pictures = render(classes, images_per_model, seed, viewpoints=compcars.VIEWPOINTS, size=size)
    if bad_files:
        spoil(pictures, seed)
    fs.makedirs(out)
    if layout == "stanford_cars":
        paths = stanford.write_stanford(out, variant, classes, pictures, seed, csv_header, crlf, folder_style)
    else:
        paths = compcars.write_compcars(out, variant, classes, pictures, seed)
    truth = ground_truth(layout, variant, classes, pictures, paths)
    fs.write_text_atomic(fs.join(out, GROUND_TRUTH), json.dumps(truth, indent=1))
    return truth


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
        "class_of": {paths[i]: p.class_index for i, p in enumerate(pictures)},
        "bbox_of": {paths[i]: list(p.bbox) for i, p in enumerate(pictures)},
    }
