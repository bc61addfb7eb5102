"""``python -m data_prep.build``: a dataset tree → stratified, sharded TFRecords + ``manifest.json``.

Steps: read the dataset (layout detected) → keep the official split's rows if asked → drop rare
classes → (``--label-conflicts drop|keep``: hash and verify every image, resolve the conflicts) →
vocabularies and integer labels → (grouped split: hash every image, group verified near-duplicates) →
assign splits → shuffle and plan shards → write shards in parallel → near-duplicate and label-conflict
reports (:mod:`data_prep.near_duplicates`) → ``rejected.csv`` and ``manifest.json`` (written last,
atomically). Re-running the same command after an interruption finishes the job without redoing
complete shards (the plan is kept in ``OUT/.build/``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import logging
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from common import fs
from common.cli import command_parser, quiet_tensorflow, run_main, setup_logging
from common.errors import UserError
from common.lock import folder_lock
from data_prep import labels as label_ops, manifest as manifest_io, near_duplicates
from data_prep.images import TURNED, ImageTask
from data_prep.options import BuildOptions, parse_fractions
from data_prep.datasets import DATASETS, read_dataset
from data_prep.readers import ReadOptions
from data_prep.parallel import pool_scope
from data_prep.shards import (ShardInputs, ShardPlan, estimate_bytes_per_image, plan_split,
                              shard_count_for_split, write_shards)
from data_prep.synthetic import GROUND_TRUTH
from data_prep.splits import SPLITTERS, assign_splits
from data_prep.table import BBOX_COLUMNS, DatasetTable, concat_rejects, make_rejects, summarize_rejects

LOG = logging.getLogger("data_prep.build")
SPLITS = ("train", "val", "test")
PLAN = ".build/plan.json"
LOCK = ".lock"  # not ".build…": ram:// treats names as prefixes
WRITTEN_FILES = (manifest_io.MANIFEST, manifest_io.REJECTED, near_duplicates.NEAR_DUPLICATES,
                 near_duplicates.LABEL_CONFLICTS, near_duplicates.CONTACT_SHEET)


class TooManyRejects(UserError):
    """More images were rejected than ``--max-reject-fraction`` allows."""


def output_state(options: BuildOptions) -> str:
    """``fresh``, ``resume`` or ``done`` for the output folder; refuse to mix different builds."""
    out, wanted = options.out, options.fingerprint()
    if options.overwrite:
        check_overwrite(options)
        clear_output(out)
        return "fresh"
    for name, state in ((manifest_io.MANIFEST, "done"), (PLAN, "resume")):
        path = fs.join(out, name)
        if fs.exists(path):
            recorded = recorded_options(path)
            if recorded != wanted:
                changed = sorted(key for key in set(recorded) | set(wanted) if recorded.get(key) != wanted.get(key))
                what = "a finished build" if state == "done" else "an interrupted build"
                raise UserError(f"--out {out} holds {what} made with different options "
                                f"({', '.join(f'{k}: {recorded.get(k)!r} → {wanted.get(k)!r}' for k in changed)}); "
                                "re-run with the same options, choose another --out, or pass --overwrite")
            return state
    if fs.isdir(out):
        others = [name for name in fs.listdir(out) if name not in (".build", LOCK) and fs.TMP_MARK not in name]
        if others:
            raise UserError(f"--out {out} is not empty and holds no build; choose an empty or new "
                            "folder (or pass --overwrite to replace a previous build there)")
        clear_output(out)  # a build stopped before its plan was saved: start it again
    return "fresh"


def built_here(name: str) -> bool:
    """Whether a build writes files of this name (shards, reports, its plan, lock and temporaries)."""
    return name.endswith(".tfrec") or name in WRITTEN_FILES or name in (".build", LOCK) or fs.TMP_MARK in name


def check_overwrite(options: BuildOptions) -> None:
    """``--overwrite`` replaces a previous build, never a folder of other files."""
    out = options.out
    if not fs.isdir(out) or any(fs.exists(fs.join(out, name)) for name in (manifest_io.MANIFEST, PLAN)):
        return
    foreign = sorted(name for name in fs.listdir(out) if not built_here(name))
    if foreign:
        shown = ", ".join(foreign[:4]) + (", …" if len(foreign) > 4 else "")
        raise UserError(f"--out {out} holds no build but other files ({shown}); --overwrite replaces only a previous "
                        "build: choose an empty or new folder (nothing was changed)")


def recorded_options(path: str) -> dict:
    """The build options stored in a manifest or plan (a clear error for anyone else's file)."""
    try:
        recorded = json.loads(fs.read_text(path))["options"]
        if isinstance(recorded, dict):
            return recorded
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise UserError(f"{path} was not written by data_prep.build; choose another --out "
                    "(or pass --overwrite to replace it)")


def clear_output(out: str) -> None:
    """Remove what a build writes (and only that) from ``out``."""
    if not fs.isdir(out):
        return
    fs.remove_tree(fs.join(out, ".build"))
    for name in fs.listdir(out):
        if name.endswith(".tfrec") or name in WRITTEN_FILES or fs.TMP_MARK in name:
            fs.remove(fs.join(out, name))


def select_rows(data: DatasetTable, options: BuildOptions):
    """Keep the official split's rows when asked and drop rare classes; return what was set aside."""
    excluded = 0
    if SPLITTERS.get(options.split).official:
        keep = data.table["source_split"].isin(["train", "test"])
        excluded = int((~keep).sum())
        if excluded and keep.any():
            LOG.info("%d images are not in the official split and are left out", excluded)
            data = dataclasses.replace(data, table=data.table.loc[keep].reset_index(drop=True))
    data, dropped = label_ops.drop_rare_classes(data, options.min_images)
    if dropped:
        LOG.info("dropped %d model classes with fewer than %d images (%d images)",
                 len(dropped), options.min_images, sum(dropped.values()))
    if data.table.empty:
        raise UserError("no images left to write (check --root, --min-images and the rejections)")
    return data, excluded, dropped


def make_tasks(data: DatasetTable, want_hash: bool) -> List[ImageTask]:
    """One picklable task per row: absolute image path and the annotated box (if any)."""
    boxes = data.table[list(BBOX_COLUMNS)].astype("float64").to_numpy()
    return [ImageTask(fs.join(data.base, path), None if np.isnan(box).any() else tuple(int(v) for v in box),
                      want_hash)
            for path, box in zip(data.table["image_path"], boxes)]


def table_digest(data: DatasetTable, labels: pd.DataFrame) -> str:
    """Checksum of ids and labels: a resumed build must see the same data as the first run."""
    frame = pd.concat([data.table[["image_id"]], labels], axis=1)
    return hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()


def create_plan(options: BuildOptions, data: DatasetTable, labels: pd.DataFrame, tasks, known=None) -> dict:
    """Assign splits, shuffle, size the shards; the plan is what a resumed run repeats exactly."""
    ids = data.table["image_id"].tolist()
    groups, hashes = None, {}
    if SPLITTERS.get(options.split).grouped:
        groups, hashes = near_duplicates.grouped_hashes(tasks, ids, options, known)
    elif known:
        hashes = {row: known[image_id] for row, image_id in enumerate(ids) if image_id in known}
    assignment = assign_splits(options.split, labels["model"].to_numpy(), data.table["source_split"].to_numpy(),
                               options.val_fraction, options.test_fraction, options.seed, groups, options.val_from)
    rng = np.random.default_rng(options.seed)
    order = {split: rng.permutation(np.flatnonzero(assignment == split)) for split in SPLITS}
    bytes_per_image = None
    if not options.num_shards:
        sample = np.concatenate([order[split] for split in SPLITS])
        bytes_per_image = estimate_bytes_per_image([tasks[row] for row in sample], options.image_options())
    shards = {}
    for split in SPLITS:
        if len(order[split]):
            count = shard_count_for_split(len(order[split]), bytes_per_image, options.shard_mb, options.num_shards)
            shards[split] = [[ids[row] for row in piece.rows] for piece in plan_split(split, order[split], count)]
    return {"options": options.fingerprint(), "created": now(), "table_sha256": table_digest(data, labels),
            "bytes_per_image": bytes_per_image, "shards": shards,
            "hashes": {ids[row]: value for row, value in hashes.items()}}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def load_plan(options: BuildOptions, data: DatasetTable, labels: pd.DataFrame) -> dict:
    plan = json.loads(fs.read_text(fs.join(options.out, PLAN)))
    if plan["table_sha256"] != table_digest(data, labels):
        raise UserError(f"the dataset under {options.root} changed since the interrupted build in "
                        f"{options.out} (different images or labels); pass --overwrite to start again")
    LOG.info("resuming the build started at %s", plan["created"])
    return plan


def shard_plans(plan: dict, data: DatasetTable) -> List[ShardPlan]:
    position = {image_id: row for row, image_id in enumerate(data.table["image_id"])}
    plans = []
    for split, pieces in plan["shards"].items():
        plans += [ShardPlan(split, index, len(pieces), tuple(position[i] for i in piece))
                  for index, piece in enumerate(pieces)]
    return plans


def split_entries(parts: Dict[str, dict], data: DatasetTable, labels: pd.DataFrame,
                  vocabularies: Dict[str, List[str]]) -> Dict[str, dict]:
    position = {image_id: row for row, image_id in enumerate(data.table["image_id"])}
    entries = {}
    for split in SPLITS:
        split_parts = [part for part in parts.values() if part["split"] == split]
        if split_parts:
            rows = [position[image_id] for part in split_parts for image_id in part["written"]]
            counts = label_ops.class_counts(labels.iloc[rows], vocabularies)
            entries[split] = manifest_io.split_entry(split_parts, counts)
    return entries


def rejection_table(data: DatasetTable, parts: Dict[str, dict]) -> pd.DataFrame:
    written = make_rejects({"image_id": image_id, "stage": "write", "reason": reason}
                           for part in sorted(parts.values(), key=lambda part: part["name"])
                           for image_id, reason in part["rejected"])
    return concat_rejects([data.rejected, written]).sort_values("image_id", kind="stable").reset_index(drop=True)


def finish(options: BuildOptions, data: DatasetTable, labels, vocabularies, plan, parts, excluded, dropped,
           tasks, found=None) -> dict:
    """Write the reports, ``rejected.csv`` and (unless too much was rejected) ``manifest.json``;
    return the manifest. ``found``: label conflicts resolved before planning (conflicts, paths)."""
    near, conflicts = near_duplicates.near_duplicate_report(options, data, tasks, parts, plan, found)
    rejected = rejection_table(data, parts)
    fs.write_text_atomic(fs.join(options.out, manifest_io.REJECTED), rejected.to_csv(index=False))
    considered = len(data.table) + len(data.rejected)
    chosen = int((rejected["stage"] == "label_conflict").sum())  # dropped on request, not broken
    fraction = (len(rejected) - chosen) / max(1, considered - chosen)
    conversions: Dict[str, int] = {}
    for part in parts.values():
        for reason, count in part["converted"].items():
            conversions[reason] = conversions.get(reason, 0) + count
    manifest = manifest_io.build_manifest(
        dataset=data.dataset, layout=data.layout, heads=vocabularies,
        splits=split_entries(parts, data, labels, vocabularies), options=options.fingerprint(),
        created=plan["created"], rejected={"count": len(rejected), "fraction": round(fraction, 6),
                                           "by_reason": summarize_rejects(rejected), "file": manifest_io.REJECTED},
        dropped=dropped, excluded=excluded, conversions=conversions,
        notes={**data.notes, "synthetic": fs.exists(fs.join(options.root, GROUND_TRUTH))},  # the model card says so
        hierarchy=label_ops.hierarchy(labels),
        near_duplicates=near, label_conflicts=conflicts)
    print_build_summary(options, manifest)
    if fraction > options.max_reject_fraction and not options.accept_rejects:
        raise TooManyRejects(
            f"{len(rejected)} of {considered} images ({100 * fraction:.1f}%) were rejected, more than "
            f"--max-reject-fraction {options.max_reject_fraction:g}; the reasons are in "
            f"{fs.join(options.out, manifest_io.REJECTED)}. The shards are kept: re-run the same command "
            "with --accept-rejects to write the manifest, or fix the images and pass --overwrite")
    manifest_io.write_manifest(options.out, manifest)
    fs.remove_tree(fs.join(options.out, ".build"))
    return manifest


def build_dataset(options: BuildOptions) -> dict:
    """Build (or finish, or confirm) the dataset described by ``options``; return the manifest.

    ``--out`` is checked for writing and locked first: a second build on the same folder is refused."""
    options = options.resolved()
    fs.ensure_writable_folder(options.out, "--out")
    with folder_lock(options.out, "build", LOCK), pool_scope(options.workers):
        return _build(options)


def _build(options: BuildOptions) -> dict:
    state = output_state(options)
    if state == "done":
        LOG.info("%s already holds this build; nothing to do", options.out)
        return manifest_io.load_manifest(options.out)
    spec = DATASETS.get(options.dataset)
    data = read_dataset(options.dataset, options.root, options.layout, ReadOptions(clean_names=options.clean_names))
    LOG.info("read %d images (%s layout), %d rejected while reading", len(data.table), data.layout, len(data.rejected))
    data, excluded, dropped = select_rows(data, options)
    found, known = None, None
    if options.label_conflicts != "report":
        data, conflicts, known, paths = near_duplicates.label_conflicts_first(options, data, make_tasks(data, True))
        found = conflicts, paths
    vocabularies = label_ops.make_vocabularies(data, spec.heads)
    labels = label_ops.encode_labels(data, vocabularies)
    tasks = make_tasks(data, want_hash=not SPLITTERS.get(options.split).grouped)
    if state == "resume":
        plan = load_plan(options, data, labels)
    else:
        fs.makedirs(fs.join(options.out, ".build"))
        plan = create_plan(options, data, labels, tasks, known)
        fs.write_text_atomic(fs.join(options.out, PLAN), json.dumps(plan))
    inputs = ShardInputs(tasks, data.table["image_id"].tolist(),
                         {head: labels[head].to_numpy() for head in labels}, data.table["viewpoint"].tolist())
    parts = write_shards(options.out, shard_plans(plan, data), inputs, options.image_options(),
                         options.workers, options.progress)
    return finish(options, data, labels, vocabularies, plan, parts, excluded, dropped, tasks, found)


def print_build_summary(options: BuildOptions, manifest: dict) -> None:
    print(f"\n{manifest['dataset']} ({manifest['layout']} layout, {options.split} split) → {options.out}")
    print(f"  {'split':<6} {'examples':>9} {'shards':>7} {'MB':>9}")
    for split, entry in manifest["splits"].items():
        megabytes = sum(shard["bytes"] for shard in entry["shards"]) / 1e6
        print(f"  {split:<6} {entry['examples']:>9} {len(entry['shards']):>7} {megabytes:>9.1f}")
    print("  heads: " + ", ".join(f"{head} ({entry['num_classes']})" for head, entry in manifest["heads"].items()))
    rejected = manifest["rejected"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in rejected["by_reason"].items())
    print(f"  rejected: {rejected['count']} ({100 * rejected['fraction']:.2f}%){': ' + reasons if reasons else ''}")
    turned = manifest["conversions"].get(TURNED, 0)
    if turned:
        print(f"  {TURNED} (EXIF orientation): {turned}")
    if manifest["dropped_classes"]:
        print(f"  dropped classes (< {options.min_images} images): {len(manifest['dropped_classes'])}")
    near = manifest["near_duplicates"]
    crossing = ", ".join(f"{key} {value}" for key, value in near["cross_split_pairs"].items())
    print(f"  near-duplicates: {near['pairs']} same-photo pairs of {near['candidates']} pHash candidates "
          f"(distance ≤ {near['threshold']}; {near['lookalikes']} look-alikes set aside); across splits: {crossing}")
    conflicts = manifest["label_conflicts"]
    if conflicts["pairs"]:
        done = {"report": "reported only", "drop": "copies dropped", "keep": "resolved as --conflict-labels says"}
        print(f"  label conflicts: {conflicts['pairs']} pair(s) in {conflicts['groups']} group(s), "
              f"{done[conflicts['action']]}: see {near_duplicates.LABEL_CONFLICTS} and {near_duplicates.CONTACT_SHEET}")
    else:
        print("  label conflicts: none")


def parse_args(argv: Optional[Sequence[str]]) -> BuildOptions:
    parser = command_parser("python -m data_prep.build", __doc__)
    add = parser.add_argument
    add("--dataset", required=True, help="stanford_cars or compcars")
    add("--root", required=True, help="dataset root folder (local or gs://…)")
    add("--out", required=True, help="output folder for shards and manifest.json (local or gs://…)")
    add("--layout", help="force a layout instead of detecting it")
    add("--split", help="official | stratified | grouped "
        "(default: official for stanford_cars, stratified for compcars)")
    add("--val-fraction", type=float, help="validation fraction (default 0.15; official: 0.1 of train)")
    add("--test-fraction", type=float, help="test fraction for stratified/grouped splits (default 0.15)")
    add("--fractions", help="TRAIN/VAL/TEST percentages, e.g. 67.5/22.5/10 (instead of the two above)")
    add("--val-from", choices=["train", "test"], default="train",
        help="official split: carve validation from train (default) or from test (report 003: half of test)")
    add("--min-images", type=int, default=0, help="drop model classes with fewer images")
    add("--max-side", type=int, help="downscale so the longer side is at most PX pixels")
    add("--crop", choices=["bbox"], help="crop to the bounding box (with --crop-margin)")
    add("--crop-margin", type=float, default=0.1, help="margin around the box, fraction of its size")
    add("--jpeg-quality", type=int, default=95, help="quality of re-encoded images")
    add("--shard-mb", type=float, default=128.0, help="target shard size in MB (default 128)")
    add("--num-shards", type=int, help="shards per split instead of --shard-mb")
    add("--workers", type=int, default=BuildOptions("", "", "").workers, help="worker processes")
    add("--seed", type=int, default=42)
    add("--clean-names", action=argparse.BooleanOptionalAction, default=True,
        help="map CompCars make misspellings/duplicates to one make (default on)")
    add("--hamming-threshold", type=int, default=12,
        help="pHash bits for a near-duplicate candidate, verified as the same photo next (default 12)")
    add("--label-conflicts", choices=["report", "drop", "keep"], default="report",
        help="the same photo under two model labels: report (default), drop every copy, or keep the copy "
             "and label named in --conflict-labels")
    add("--conflict-labels", help="CSV with image_id,model: per conflict, the copy to keep and its class")
    add("--max-reject-fraction", type=float, default=0.01, help="fail above this rejected fraction")
    add("--accept-rejects", action="store_true", help="write the manifest even above that fraction")
    add("--overwrite", action="store_true", help="replace a previous build in --out")
    add("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    val, test = args.val_fraction, args.test_fraction
    if args.fractions:
        if val is not None or test is not None:
            raise UserError("--fractions replaces --val-fraction/--test-fraction: give one or the other")
        val, test = parse_fractions(args.fractions)
    return BuildOptions(
        dataset=args.dataset, root=args.root, out=args.out, layout=args.layout, split=args.split,
        val_fraction=val, test_fraction=test, val_from=args.val_from, min_images=args.min_images,
        max_side=args.max_side,
        crop=args.crop, crop_margin=args.crop_margin, jpeg_quality=args.jpeg_quality, shard_mb=args.shard_mb,
        num_shards=args.num_shards, workers=args.workers, seed=args.seed, clean_names=args.clean_names,
        hamming_threshold=args.hamming_threshold, label_conflicts=args.label_conflicts,
        conflict_labels=args.conflict_labels, max_reject_fraction=args.max_reject_fraction,
        accept_rejects=args.accept_rejects, overwrite=args.overwrite, progress=not args.no_progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    setup_logging()
    build_dataset(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
