"""Precision and recall of the near-duplicate detector (pHash candidates + same-photo verification)
on the real Stanford Cars photos in ../shared/realdata/stanford_cars/photos.

Not a test: prints two tables.
* Recall: for a sample of the real photos, copies made here — resized, JPEG re-encoded at several
  qualities, cropped a few percent, colour-shifted, red and blue swapped, and a combination — and
  the fraction of (original, copy) pairs that the build's two stages call the same photo.
* Precision: every pair among the 825 real photos that the detector reports, and every pair
  ``tests/data/real_photo_pairs.csv`` judged by eye (same photo or a different car that looks alike).

Usage: ``python -m benchmarks.bench_samephoto [--photos PATH] [--sample 150] [--threshold 12]``
"""
from __future__ import annotations

from benchmarks import results
from benchmarks.bench_build import machine
from common.cli import command_parser, quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: no start-up banners

import io
import os
import sys

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from data_prep.near_duplicates import candidates as dedup, same_photo as samephoto
from data_prep.images import perceptual_hash

PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "realdata", "stanford_cars", "photos")
JUDGED = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real_photo_pairs.csv")


def jpeg(image, quality: int):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image, left: float, top: float, right: float, bottom: float):
    width, height = image.size
    return image.crop((int(left * width), int(top * height), width - int(right * width), height - int(bottom * height)))


COPIES = {
    "resized to 1/2": lambda im: im.resize((im.width // 2, im.height // 2)),
    "resized to 1/4": lambda im: im.resize((max(16, im.width // 4), max(16, im.height // 4))),
    "JPEG quality 30": lambda im: jpeg(im, 30),
    "JPEG quality 50": lambda im: jpeg(im, 50),
    "JPEG quality 75": lambda im: jpeg(im, 75),
    "cropped 2% each side": lambda im: crop(im, .02, .02, .02, .02),
    "cropped 3% each side": lambda im: crop(im, .03, .03, .03, .03),
    "cropped 5% left and bottom": lambda im: crop(im, .05, 0, 0, .05),
    "brightness +15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "saturation −30%": lambda im: ImageEnhance.Color(im).enhance(0.7),
    "red and blue swapped": lambda im: Image.merge("RGB", im.split()[::-1]),
    "cropped 2%, 1/2, q50, +15%": lambda im: ImageEnhance.Brightness(
        jpeg(crop(im, .02, .02, .02, .02).resize((im.width // 2, im.height // 2)), 50)).enhance(1.15),
}


def signature(image, data: bytes = None):
    """(pHash, thumbnail) as a build sees the file: the thumbnail is decoded from JPEG bytes (the
    photo's own file, or the copy saved at quality 95) the way the build's verification reads it."""
    if data is None:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        data = buffer.getvalue()
    return int(perceptual_hash(image), 16), samephoto.thumbnail_of_bytes(data)


def detected(first, second, threshold: int):
    """(pHash candidate?, same photo?) for two signatures."""
    distance = bin(first[0] ^ second[0]).count("1")
    return distance <= threshold, distance <= threshold and samephoto.same_photo(
        samephoto.similarity(first[1], second[1]))


def main(argv=None) -> int:
    parser = command_parser("python -m benchmarks.bench_samephoto", __doc__)
    parser.add_argument("--photos", default=PHOTOS)
    parser.add_argument("--sample", type=int, default=150, help="photos to copy for the recall table")
    parser.add_argument("--threshold", type=int, default=12, help="pHash bits for a candidate")
    args = parser.parse_args(argv)
    labels = os.path.join(args.photos, "labels.csv")
    if not os.path.isfile(labels):
        print(f"no real photos at {args.photos} (labels.csv missing)", file=sys.stderr)
        return 2
    table = pd.read_csv(labels)
    paths = [os.path.join(args.photos, "car_data", "car_data", row.split, row.class_name, row.file)
             for row in table.itertuples()]
    images = [Image.open(path).convert("RGB") for path in paths]
    signatures = [signature(image, open(path, "rb").read()) for image, path in zip(images, paths)]

    sample = np.random.default_rng(0).choice(len(images), size=min(args.sample, len(images)), replace=False)
    print(f"recall on copies of {len(sample)} real photos (pHash distance ≤ {args.threshold}, then "
          f"similarity ≥ {samephoto.SAME_PHOTO}):\n")
    print("| copy | pHash candidates | verified same photo |\n|---|---:|---:|")
    found_all, recall = [], []
    for name, make_copy in COPIES.items():
        outcomes = [detected(signatures[index], signature(make_copy(images[index])), args.threshold)
                    for index in sample]
        candidates, found = np.mean([r[0] for r in outcomes]), np.mean([r[1] for r in outcomes])
        found_all.append(found)
        recall.append({"copy": name, "candidates": float(candidates), "found": float(found)})
        print(f"| {name} | {100 * candidates:.1f}% | {100 * found:.1f}% |")
    print(f"| **all copies** | | **{100 * np.mean(found_all):.1f}%** |\n")

    hashes = np.array([value for value, _ in signatures], dtype=np.uint64)
    pairs = dedup.near_duplicate_pairs(hashes, args.threshold)
    verified = [(int(a), int(b)) for a, b in pairs
                if samephoto.same_photo(samephoto.similarity(signatures[a][1], signatures[b][1]))]
    name = {f"{row.split}/{row.file}": index for index, row in enumerate(table.itertuples())}
    judged = pd.read_csv(JUDGED, comment="#")
    verdict = {frozenset((name[row.file_a], name[row.file_b])): row.judged for row in judged.itertuples()}
    print(f"precision on the {len(images)} real photos: {len(pairs)} pHash candidates, {len(verified)} reported "
          "as the same photo\n")
    print("| photo a | photo b | classes | pHash | similarity | judged by eye |\n|---|---|---|---:|---:|---|")
    shown = sorted(set(verified) | {tuple(sorted(pair)) for pair in verdict})
    judged_pairs = []
    for first, second in shown:
        a, b = table.iloc[first], table.iloc[second]
        value = samephoto.similarity(signatures[first][1], signatures[second][1])
        distance = bin(signatures[first][0] ^ signatures[second][0]).count("1")
        mark = "reported" if (first, second) in verified or (second, first) in verified else "not reported"
        print(f"| {a.split}/{a.file} | {b.split}/{b.file} | {a.class_name} / {b.class_name} | {distance} | "
              f"{value:.3f} ({mark}) | {verdict.get(frozenset((first, second)), 'not judged')} |")
        judged_pairs.append({"classes": [a.class_name, b.class_name], "phash_bits": distance, "similarity": value,
                             "reported": mark == "reported", "judged": verdict.get(frozenset((first, second)))})
    wrong = [pair for pair in verified if verdict.get(frozenset(pair)) != "same"]
    missed = [pair for pair, judged_as in verdict.items() if judged_as == "same"
              and tuple(sorted(pair)) not in {tuple(sorted(p)) for p in verified}]
    print(f"\nreported pairs not judged the same photo: {len(wrong)}; judged-same pairs missed: {len(missed)}")
    results.save("bench_samephoto", {
        "photos": len(images), "sample": int(len(sample)), "threshold_bits": args.threshold,
        "same_photo": samephoto.SAME_PHOTO, "recall": recall, "recall_all": float(np.mean(found_all)),
        "candidates": len(pairs), "verified": len(verified), "wrong": len(wrong), "missed": len(missed),
        "pairs": judged_pairs}, machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
