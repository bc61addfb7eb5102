"""The real Stanford Cars photos (../shared/realdata/stanford_cars/photos, 825 JPEGs of 20 classes)
repeated to a benchmark's size, for the benchmarks' ``--real`` option.

Copies are made distinct — each original, mirrored, rotated by 90°, 180° and 270°, and flipped upside
down, re-encoded at JPEG quality 92 — so that they are not near-duplicates of each other (byte-exact
repeats would all be verified as the same photo, a cost no real dataset has). The tree keeps the
photos' Kaggle class-folder layout (``car_data/car_data/{train,test}/<class>/<file>``).
"""
from __future__ import annotations

import os

import pandas as pd
from PIL import Image

PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "realdata", "stanford_cars", "photos")
VARIANTS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
            Image.Transpose.ROTATE_270, Image.Transpose.FLIP_TOP_BOTTOM)
DONE = "REAL_TREE.txt"


def real_tree(photos: str, root: str, images: int) -> int:
    """Write about ``images`` pictures (at most 6 per photo) under ``root``; return how many."""
    marker = os.path.join(root, DONE)
    if os.path.exists(marker):
        return int(open(marker).read())
    labels = os.path.join(photos, "labels.csv")
    if not os.path.isfile(labels):
        raise SystemExit(f"--real: no real photos at {photos} (labels.csv missing)")
    table = pd.read_csv(labels)
    written = 0
    for variant_index, variant in enumerate(VARIANTS):
        for row in table.itertuples():
            if written >= images:
                break
            source = os.path.join(photos, "car_data", "car_data", row.split, row.class_name, row.file)
            folder = os.path.join(root, "car_data", "car_data", row.split, row.class_name)
            os.makedirs(folder, exist_ok=True)
            stem = os.path.splitext(row.file)[0]
            image = Image.open(source).convert("RGB")
            if variant is not None:
                image = image.transpose(variant)
            image.save(os.path.join(folder, f"{stem}_{variant_index}.jpg"), "JPEG", quality=92)
            written += 1
    with open(marker, "w") as handle:
        handle.write(str(written))
    return written
