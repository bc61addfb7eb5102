"""Near-duplicates and label conflicts of a build: pHash candidates, verified as the same photo.

Stage 1 pairs images whose 64-bit pHash differ in at most ``--hamming-threshold`` bits (cheap,
all pairs); stage 2 (:mod:`data_prep.near_duplicates.same_photo`) re-reads the candidates at thumbnail size and
keeps the pairs that are the same photo. Verified pairs are what the build reports
(``near_duplicates.csv``, the manifest's cross-split counts) and groups on (grouped split);
verified pairs whose ``model`` labels differ are *label conflicts* (``label_conflicts.csv`` and a
contact sheet, ``label_conflicts.png``). ``--label-conflicts`` decides what the build does with
them: ``report`` (default), ``drop`` every member of a conflicting group, or ``keep`` one copy
under the label named in ``--conflict-labels`` (a CSV with ``image_id,model``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from common.progress import bar
from data_prep.images import ImageTask, Processed
from data_prep.near_duplicates import candidates, same_photo
from data_prep.near_duplicates.contact_sheet import CONTACT_SHEET, LABEL_CONFLICTS, NEAR_DUPLICATES, write_reports
from data_prep.near_duplicates.label_conflicts import read_choices, resolve
from data_prep.options import BuildOptions
from data_prep.parallel import ordered_map, worker_pool
from data_prep.shards import hash_images
from data_prep.table import DatasetTable, concat_rejects

LOG = logging.getLogger("data_prep.near_duplicates")
PAIR_COLUMNS = ("image_id_a", "image_id_b", "split_a", "split_b", "model_a", "model_b", "distance", "similarity")
POOL_FROM = 64  # images to verify per worker process below which they are verified in this process


@dataclasses.dataclass
class Pairs:
    """Candidate pairs (row positions into ``ids``) with their pHash distance and similarity."""

    ids: List[str]
    index: np.ndarray  # (n, 2) int
    distance: np.ndarray  # (n,) int
    similarity: np.ndarray  # (n,) float; NaN: an image could not be re-read

    @property
    def verified(self) -> np.ndarray:
        return self.similarity >= same_photo.SAME_PHOTO

    def same_photo(self) -> np.ndarray:
        return self.index[self.verified]


def verify(index: np.ndarray, paths: Sequence[str], progress: bool = False, workers: int = 1) -> np.ndarray:
    """The similarity of each candidate pair (rows of ``index`` into ``paths``; NaN where an image
    cannot be read), in two passes over the images in pairs, spread over ``workers`` processes:
    first each one's small signature (8 KB: its layout and whole detail), then — for the images in a
    pair that passes the layout prefilter — its crops, once, against the signatures of all its
    partners. Each image is decoded at most twice however many pairs it is in; no pictures are kept."""
    members = np.unique(index) if len(index) else np.zeros(0, dtype=np.int64)
    with worker_pool(min(workers, max(1, len(members) // POOL_FROM))) as pool:
        found = ordered_map(pool, same_photo.signatures_of_files, (paths[int(member)] for member in members),
                            batch_size=32, window=4 * max(1, workers))
        signatures = {int(member): value for member, value in zip(members, bar(
            found, total=len(members), unit="img", desc="near-duplicates: signatures", disable=not progress))
            if value is not None}
        values, search = same_photo.prefilter(index, signatures)
        groups = list(same_photo.partners(index, search))
        items = ((paths[member], same_photo.wholes_of(partners, signatures)) for member, _, partners in groups)
        best = ordered_map(pool, same_photo.best_of_files, items, batch_size=16, window=4 * max(1, workers))
        unreadable = np.zeros(len(index), dtype=bool)
        for (_, rows, _), values_of_member in zip(groups, bar(best, total=len(groups), unit="img",
                                                             desc="near-duplicates: crop search",
                                                             disable=not progress)):
            if values_of_member is None:  # gone or damaged since its signature was taken
                unreadable[rows] = True
            else:
                values[rows] = np.maximum(values[rows], values_of_member)
    values[unreadable] = np.nan
    return values


def find_pairs(ids: Sequence[str], hashes: Sequence[str], paths: Sequence[str], threshold: int,
               progress: bool = False, workers: int = 1) -> Pairs:
    """pHash candidates among ``hashes`` (hex), each verified as the same photo or not by
    re-reading both images from ``paths`` (:func:`verify`)."""
    index = candidates.near_duplicate_pairs(candidates.hashes_to_array(hashes), threshold)
    values = candidates.hashes_to_array(hashes)
    distance = (np.bitwise_count(values[index[:, 0]] ^ values[index[:, 1]]).astype(int) if len(index)
                else np.zeros(0, dtype=int))
    pairs = Pairs(list(ids), index, distance, verify(index, paths, progress, workers))
    LOG.info("%d pHash candidate pairs (distance ≤ %d), %d the same photo", len(index), threshold,
             int(pairs.verified.sum()))
    return pairs


def pair_table(pairs: Pairs, splits: Sequence[Optional[str]], models: Sequence[str], only_verified: bool = True
               ) -> pd.DataFrame:
    """One row per pair with :data:`PAIR_COLUMNS` (the verified ones, or all candidates)."""
    keep = pairs.verified if only_verified else np.ones(len(pairs.index), dtype=bool)
    first, second = pairs.index[keep, 0], pairs.index[keep, 1]
    ids, splits, models = np.asarray(pairs.ids, dtype=object), np.asarray(splits, dtype=object), \
        np.asarray(models, dtype=object)
    frame = pd.DataFrame({"image_id_a": ids[first], "image_id_b": ids[second], "split_a": splits[first],
                          "split_b": splits[second], "model_a": models[first], "model_b": models[second],
                          "distance": pairs.distance[keep], "similarity": np.round(pairs.similarity[keep], 4)},
                         columns=list(PAIR_COLUMNS))
    return frame.sort_values(["image_id_a", "image_id_b"], kind="stable").reset_index(drop=True)


def conflict_table(pairs: Pairs, splits, models) -> pd.DataFrame:
    """Verified pairs whose ``model`` labels differ, with the id of their group (smallest member)."""
    table = pair_table(pairs, splits, models)
    table = table[table["model_a"] != table["model_b"]].reset_index(drop=True)
    groups = candidates.group_ids(len(pairs.ids), pairs.same_photo())
    group_of = dict(zip(pairs.ids, (pairs.ids[group] for group in groups)))
    table.insert(0, "group", [group_of[image_id] for image_id in table["image_id_a"]])
    return table


def describe(pairs: Pairs, splits: Sequence[Optional[str]], threshold: int) -> dict:
    """The manifest's ``near_duplicates`` entry: counts from the verified pairs."""
    entry = candidates.describe(pairs.same_photo(), splits, threshold)
    entry.update(candidates=int(len(pairs.index)), lookalikes=int((~pairs.verified).sum()),
                 verification={"method": "thumbnail detail correlation over slight crops",
                               "same_photo_at_least": same_photo.SAME_PHOTO},
                 file=NEAR_DUPLICATES)
    return entry


# --- the build's two stages: before planning (grouped split, --label-conflicts) and after writing ---

def verified_pairs(tasks: Sequence[ImageTask], ids: Sequence[str], options: BuildOptions,
                   known: Optional[Dict[str, str]] = None):
    """Hash every image (or take ``known`` hashes by id) and verify the pHash candidates; return
    ``(Pairs over the hashed rows, {row: hex hash})``."""
    if known is None:
        results = hash_images(tasks, options.workers, options.progress)
        hashes = {row: result.phash for row, result in enumerate(results) if isinstance(result, Processed)}
    else:
        hashes = {row: known[image_id] for row, image_id in enumerate(ids) if image_id in known}
    rows = sorted(hashes)
    pairs = find_pairs([ids[row] for row in rows], [hashes[row] for row in rows], [tasks[row].path for row in rows],
                       options.hamming_threshold, options.progress, options.workers)
    return pairs, hashes, rows


def grouped_hashes(tasks: Sequence[ImageTask], ids: Sequence[str], options: BuildOptions, known=None):
    """Group the images that are verified near-duplicates: ``(group ids, {row: hex hash})``."""
    pairs, hashes, rows = verified_pairs(tasks, ids, options, known)
    same = np.asarray(rows, dtype=np.int64)[pairs.same_photo()] if len(rows) else np.zeros((0, 2), dtype=np.int64)
    return candidates.group_ids(len(tasks), same.reshape(-1, 2)), hashes


def label_conflicts_first(options: BuildOptions, data: DatasetTable, tasks: Sequence[ImageTask]):
    """``--label-conflicts drop|keep``: find and resolve the conflicts before anything is planned;
    return ``(data, conflicts table with actions, {image id: hash}, {image id: path} of their members)``."""
    ids = data.table["image_id"].tolist()
    pairs, hashes, rows = verified_pairs(tasks, ids, options)
    models = data.table["model"].to_numpy()[rows]
    conflicts = conflict_table(pairs, [None] * len(rows), models)
    choices = read_choices(options.conflict_labels) if options.label_conflicts == "keep" else {}
    paths = {image_id: task.path for image_id, task in zip(ids, tasks)
             if image_id in set(conflicts["image_id_a"]) | set(conflicts["image_id_b"])}
    data, dropped, conflicts = resolve(data, conflicts, options.label_conflicts, choices)
    data = dataclasses.replace(data, rejected=concat_rejects([data.rejected, dropped]))
    LOG.info("%d label-conflict pair(s); %d image(s) dropped", len(conflicts), len(dropped))
    return data, conflicts, {ids[row]: value for row, value in hashes.items()}, paths


def near_duplicate_report(options: BuildOptions, data: DatasetTable, tasks, parts: Dict[str, dict], plan: dict,
                          found=None) -> Tuple[dict, dict]:
    """Verified near-duplicates among the written images → the CSVs, the contact sheet and the
    manifest's ``near_duplicates`` and ``label_conflicts`` entries. ``found``: ``(conflicts, paths)``
    found (and acted on) before planning, or ``None`` to find them here (``--label-conflicts report``)."""
    row_of = {image_id: row for row, image_id in enumerate(data.table["image_id"])}
    ids, splits, hashes = [], [], []
    for part in sorted(parts.values(), key=lambda part: part["name"]):
        known = plan["hashes"] or part["hashes"]
        for image_id in part["written"]:
            if image_id in known:
                ids.append(image_id)
                splits.append(part["split"])
                hashes.append(known[image_id])
    rows = [row_of[image_id] for image_id in ids]
    pairs = find_pairs(ids, hashes, [tasks[row].path for row in rows], options.hamming_threshold, options.progress,
                       options.workers)
    models = data.table["model"].to_numpy()[rows]
    paths = {image_id: task.path for image_id, task in zip(data.table["image_id"], tasks)}
    if found is None:
        conflicts = resolve(data, conflict_table(pairs, splits, models), "report", {})[2]
    else:  # found before the splits were assigned (some copies were dropped): add the splits now
        conflicts, before = found
        paths.update({image_id: path for image_id, path in before.items() if image_id not in paths})
        split_of = dict(zip(ids, splits))
        conflicts = conflicts.assign(split_a=conflicts["image_id_a"].map(split_of),
                                     split_b=conflicts["image_id_b"].map(split_of))
    write_reports(options.out, pair_table(pairs, splits, models), conflicts, paths)
    groups = conflicts["group"].nunique() if len(conflicts) else 0
    members = set(conflicts["image_id_a"]) | set(conflicts["image_id_b"])
    entry = {"pairs": int(len(conflicts)), "groups": int(groups), "images": len(members),
             "action": options.label_conflicts, "file": LABEL_CONFLICTS,
             "figure": CONTACT_SHEET if len(conflicts) else None}
    return describe(pairs, splits, options.hamming_threshold), entry


