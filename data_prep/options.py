"""Typed, validated options of ``python -m data_prep.build`` (also used directly by tests/notebooks)."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

from common import fs
from common.errors import UserError
from data_prep.datasets import DATASETS
from data_prep.images import ImageOptions
from data_prep.splits import SPLITTERS

LABEL_CONFLICT_ACTIONS = ("report", "drop", "keep")
# Options that do not change what is written: a re-run may change them and still resume.
# the declared type of each option → (accepted Python types, the words an error uses)
OPTION_TYPES = {"str": (str, "text"), "int": (int, "a whole number"), "float": ((int, float), "a number"),
                "bool": (bool, "true or false")}
RUNTIME_ONLY = ("out", "workers", "max_reject_fraction", "accept_rejects", "overwrite", "progress")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Everything a build needs. ``None`` fields take the dataset's defaults in :meth:`resolved`."""

    dataset: str
    root: str
    out: str
    layout: Optional[str] = None
    split: Optional[str] = None
    val_fraction: Optional[float] = None
    test_fraction: Optional[float] = None
    val_from: str = "train"  # official split: carve validation from train or (report 003) from test
    min_images: int = 0
    max_side: Optional[int] = None
    crop: Optional[str] = None
    crop_margin: float = 0.1
    jpeg_quality: int = 95
    shard_mb: float = 128.0
    num_shards: Optional[int] = None
    seed: int = 42
    clean_names: bool = True
    hamming_threshold: int = 12  # pHash bits for a near-duplicate candidate (then verified)
    label_conflicts: str = "report"  # report | drop | keep (with conflict_labels)
    conflict_labels: Optional[str] = None  # CSV image_id,model: the copy to keep and its class
    bbox_tolerance: float = 0.02
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    max_reject_fraction: float = 0.01
    accept_rejects: bool = False
    overwrite: bool = False
    progress: bool = True

    def resolved(self) -> "BuildOptions":
        """Fill dataset defaults and validate every field (errors name the flag and the rule)."""
        self.check_types()
        spec = DATASETS.get(self.dataset)
        split = SPLITTERS.canonical(self.split or spec.default_split)
        method = SPLITTERS.get(split)
        if method.official and self.test_fraction is not None:
            raise UserError(f"--test-fraction does not apply to --split {split} (the dataset's own "
                            "test set is used); use --split stratified to choose test fractions")
        resolved = dataclasses.replace(
            self, split=split,
            val_fraction=method.default_val if self.val_fraction is None else self.val_fraction,
            test_fraction=(0.0 if method.official else
                           method.default_test if self.test_fraction is None else self.test_fraction),
            root=self.root if fs.is_remote(self.root) else os.path.abspath(self.root),
        )
        resolved.validate()
        return resolved

    def check_types(self) -> None:
        """Each field holds a value of its declared type (a notebook may pass ``max_side='320'``)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            optional = field.type.startswith("Optional[")
            kind = field.type[len("Optional["):-1] if optional else field.type
            if (value is None and optional) or isinstance(value, OPTION_TYPES[kind][0]) and not (
                    isinstance(value, bool) and kind != "bool"):
                continue
            flag = "--" + field.name.replace("_", "-")
            raise UserError(f"{field.name} ({flag}): expected {OPTION_TYPES[kind][1]}"
                            f"{' or None' if optional else ''} (received {value!r}, {type(value).__name__})")

    def validate(self) -> None:
        self.check_types()
        checks = [
            (0 <= self.val_fraction < 1, "--val-fraction", "a fraction in [0, 1)", self.val_fraction),
            (0 <= self.test_fraction < 1, "--test-fraction", "a fraction in [0, 1)", self.test_fraction),
            (self.val_fraction + self.test_fraction < 1, "--val-fraction + --test-fraction",
             "less than 1 (something must be left to train on)", self.val_fraction + self.test_fraction),
            (self.min_images >= 0, "--min-images", "0 or more", self.min_images),
            (self.val_from in ("train", "test"), "--val-from", "train or test", self.val_from),
            (self.val_from == "train" or SPLITTERS.get(self.split).official, "--val-from test",
             "--split official (the other splits cut validation from all images)", self.split),
            (self.max_side is None or self.max_side >= 16, "--max-side", "at least 16 pixels", self.max_side),
            (self.crop in (None, "bbox"), "--crop", "'bbox'", self.crop),
            (0 <= self.crop_margin <= 1, "--crop-margin", "a fraction of the box in [0, 1]", self.crop_margin),
            (1 <= self.jpeg_quality <= 100, "--jpeg-quality", "1..100", self.jpeg_quality),
            (self.shard_mb > 0, "--shard-mb", "a positive number of megabytes", self.shard_mb),
            (self.num_shards is None or self.num_shards >= 1, "--num-shards", "1 or more", self.num_shards),
            (self.workers >= 1, "--workers", "1 or more", self.workers),
            (0 <= self.hamming_threshold <= 32, "--hamming-threshold", "0..32 bits", self.hamming_threshold),
            (self.label_conflicts in LABEL_CONFLICT_ACTIONS, "--label-conflicts", " or ".join(LABEL_CONFLICT_ACTIONS),
             self.label_conflicts),
            ((self.label_conflicts == "keep") == bool(self.conflict_labels), "--conflict-labels",
             "a CSV file (image_id,model) exactly when --label-conflicts is keep", self.conflict_labels),
            (0 <= self.max_reject_fraction <= 1, "--max-reject-fraction", "a fraction in [0, 1]",
             self.max_reject_fraction),
            (bool(str(self.out).strip()), "--out", "a folder path", self.out),
        ]
        for ok, flag, expected, received in checks:
            if not ok:
                raise UserError(f"{flag}: expected {expected} (received {received!r})")
        if not (fs.is_remote(self.out) or fs.is_remote(self.root)) and within(self.root, os.path.abspath(self.out)):
            raise UserError(f"--out {self.out}: this is the dataset's folder or a folder holding it (--root "
                            f"{self.root}); the shards go to a folder of their own")

    def fingerprint(self) -> dict:
        """The options that determine the output (a re-run must match them to resume)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key not in RUNTIME_ONLY}

    def image_options(self) -> ImageOptions:
        return ImageOptions(max_side=self.max_side, crop=self.crop, crop_margin=self.crop_margin,
                            jpeg_quality=self.jpeg_quality, bbox_tolerance=self.bbox_tolerance)


def within(path: str, folder: str) -> bool:
    """Whether local ``path`` is ``folder`` or lies below it."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def parse_fractions(text: str) -> Tuple[float, float]:
    """``"67.5/22.5/10"`` or ``"0.7/0.15/0.15"`` → ``(val_fraction, test_fraction)``."""
    try:
        parts = [float(part) for part in text.split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(part < 0 for part in parts):
        raise UserError(f"--fractions: expected TRAIN/VAL/TEST such as 70/15/15 (received {text!r})")
    total = sum(parts)
    if not (abs(total - 100) < 0.01 or abs(total - 1) < 1e-4):
        raise UserError(f"--fractions: the three parts must add up to 100 (or 1); {text!r} adds up to {total:g}")
    return parts[1] / total, parts[2] / total
