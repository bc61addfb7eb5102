"""Near-duplicates and label conflicts of a build: pHash candidates, verified as the same photo.

Stage 1 pairs images whose 64-bit pHash differ in at most ``--hamming-threshold`` bits (cheap,
all pairs); stage 2 (:mod:`data_prep.samephoto`) re-reads the candidates at thumbnail size and
keeps the pairs that are the same photo. Verified pairs are what the build reports
(``near_duplicates.csv``, the manifest's cross-split counts) and groups on (grouped split);
verified pairs whose ``model`` labels differ are *label conflicts* (``label_conflicts.csv`` and a
contact sheet, ``label_conflicts.png``). ``--label-conflicts`` decides what the build does with
them: ``report`` (default), ``drop`` every member of a conflicting group, or ``keep`` one copy
under the label named in ``--conflict-labels`` (a CSV with ``image_id,model``).
"""
from __future__ import annotations

import dataclasses
import io
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from common import fs
from common.errors import UserError, describe_choices
from common.progress import bar
from data_prep import dedup, samephoto
from data_prep.images import ImageTask, Processed, open_image, to_rgb
from data_prep.options import BuildOptions
from data_prep.parallel import ordered_map, worker_pool
from data_prep.shards import hash_images
from data_prep.table import DatasetTable, concat_rejects, make_rejects

LOG = logging.getLogger("data_prep.duplicates")
NEAR_DUPLICATES = "near_duplicates.csv"
LABEL_CONFLICTS = "label_conflicts.csv"
CONTACT_SHEET = "label_conflicts.png"
PAIR_COLUMNS = ("image_id_a", "image_id_b", "split_a", "split_b", "model_a", "model_b", "distance", "similarity")
ACTIONS = ("report", "drop", "keep")
SHEET_PAIRS = 40  # pairs drawn on the contact sheet at most (all are in the CSV)
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
        return self.similarity >= samephoto.SAME_PHOTO

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
        found = ordered_map(pool, samephoto.signatures_of_files, (paths[int(member)] for member in members),
                            batch_size=32, window=4 * max(1, workers))
        signatures = {int(member): value for member, value in zip(members, bar(
            found, total=len(members), unit="img", desc="near-duplicates: signatures", disable=not progress))
            if value is not None}
        values, search = samephoto.prefilter(index, signatures)
        groups = list(samephoto.partners(index, search))
        items = ((paths[member], samephoto.wholes_of(partners, signatures)) for member, _, partners in groups)
        best = ordered_map(pool, samephoto.best_of_files, items, batch_size=16, window=4 * max(1, workers))
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
    index = dedup.near_duplicate_pairs(dedup.hashes_to_array(hashes), threshold)
    values = dedup.hashes_to_array(hashes)
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
    groups = dedup.group_ids(len(pairs.ids), pairs.same_photo())
    group_of = dict(zip(pairs.ids, (pairs.ids[group] for group in groups)))
    table.insert(0, "group", [group_of[image_id] for image_id in table["image_id_a"]])
    return table


def describe(pairs: Pairs, splits: Sequence[Optional[str]], threshold: int) -> dict:
    """The manifest's ``near_duplicates`` entry: counts from the verified pairs."""
    entry = dedup.describe(pairs.same_photo(), splits, threshold)
    entry.update(candidates=int(len(pairs.index)), lookalikes=int((~pairs.verified).sum()),
                 verification={"method": "thumbnail detail correlation over slight crops",
                               "same_photo_at_least": samephoto.SAME_PHOTO},
                 file=NEAR_DUPLICATES)
    return entry


# --- what the build does with label conflicts ------------------------------------------------------

def read_choices(path: str) -> Dict[str, str]:
    """``--conflict-labels``: ``image_id,model`` rows → ``{image_id: model}``."""
    try:
        frame = pd.read_csv(io.StringIO(fs.read_text(path)), dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"--conflict-labels: {path} does not exist") from None
    except OSError as error:  # a folder, no permission, a remote error
        raise UserError(f"--conflict-labels: cannot read {path} ({type(error).__name__}: {error})") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise UserError(f"--conflict-labels: {path} is not a CSV file ({error})") from None
    missing = {"image_id", "model"} - set(frame.columns)
    if missing:
        raise UserError(f"--conflict-labels: {path} needs the columns image_id and model (one row per conflict "
                        f"group: the copy to keep and its class); missing {', '.join(sorted(missing))}")
    return dict(zip(frame["image_id"].str.strip(), frame["model"].str.strip()))


def resolve(data: DatasetTable, conflicts: pd.DataFrame, action: str, choices: Dict[str, str]
            ) -> Tuple[DatasetTable, pd.DataFrame, pd.DataFrame]:
    """Apply ``action`` to the conflicting groups; return the new data, the dropped rows (as
    rejections) and the conflict table with an ``action`` column saying what happened to each pair."""
    conflicts = conflicts.copy()
    if action == "report" or conflicts.empty:
        conflicts["action"] = "reported"
        return data, make_rejects(), conflicts
    members = _group_members(conflicts)
    table = data.table.set_index("image_id", drop=False)
    decided = _check_choices(choices, members, table) if action == "keep" else {}
    drop, relabel, outcome = [], {}, {}
    for group, ids in members.items():
        kept = decided.get(group)
        if kept is None and action == "keep":
            outcome[group] = "reported (no choice in --conflict-labels)"
            continue
        for image_id in ids:
            if kept is not None and image_id == kept[0]:
                relabel[image_id] = kept[1]
            else:
                other = kept[0] if kept else next(i for i in ids if i != image_id)
                drop.append({"image_id": image_id, "stage": "label_conflict",
                             "reason": f"label conflict: the same photo as {other} "
                                       f"({table.at[image_id, 'model']} vs {table.at[other, 'model']})"})
        outcome[group] = f"kept {kept[0]} as {kept[1]}" if kept else "dropped"
    new_table = _relabelled(data.table, relabel)
    dropped_ids = {row["image_id"] for row in drop}
    new_table = new_table[~new_table["image_id"].isin(dropped_ids)].reset_index(drop=True)
    conflicts["action"] = conflicts["group"].map(outcome)
    unresolved = sum(1 for value in outcome.values() if value.startswith("reported"))
    if unresolved:
        LOG.warning("%d label-conflict group(s) have no row in --conflict-labels and are kept as they are",
                    unresolved)
    return dataclasses.replace(data, table=new_table), make_rejects(drop), conflicts


def _group_members(conflicts: pd.DataFrame) -> Dict[str, List[str]]:
    members: Dict[str, List[str]] = {}
    for group, first, second in conflicts[["group", "image_id_a", "image_id_b"]].itertuples(index=False):
        for image_id in (first, second):
            if image_id not in members.setdefault(group, []):
                members[group].append(image_id)
    return {group: sorted(ids) for group, ids in members.items()}


def _check_choices(choices: Dict[str, str], members: Dict[str, List[str]], table: pd.DataFrame
                   ) -> Dict[str, Tuple[str, str]]:
    """``{group: (image id to keep, model)}``; every row must name a conflicting image and a known class."""
    group_of = {image_id: group for group, ids in members.items() for image_id in ids}
    known = sorted(set(table["model"].dropna()))
    decided: Dict[str, Tuple[str, str]] = {}
    for image_id, model in choices.items():
        if image_id not in group_of:
            raise UserError(f"--conflict-labels: {image_id!r} is not in a label conflict of this dataset; "
                            f"name one image of each group listed in {LABEL_CONFLICTS}")
        if model not in known:
            raise UserError("--conflict-labels: " + describe_choices("model class", model, known))
        group = group_of[image_id]
        if group in decided and decided[group] != (image_id, model):
            raise UserError(f"--conflict-labels: two rows for the conflict group of {group} "
                            f"({decided[group][0]} and {image_id}); keep one")
        decided[group] = (image_id, model)
    return decided


def _relabelled(table: pd.DataFrame, relabel: Dict[str, str]) -> pd.DataFrame:
    """Give each ``image_id`` in ``relabel`` the model, and the make/year/type/class id that go with it."""
    if not relabel:
        return table
    table = table.copy()
    columns = ["make", "model", "model_name", "year", "type", "class_id"]
    reference = table.drop_duplicates("model").set_index("model", drop=False)[columns]
    for image_id, model in relabel.items():
        row = table.index[table["image_id"] == image_id][0]
        for column in columns:
            table.at[row, column] = reference.at[model, column]
    return table


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
    return dedup.group_ids(len(tasks), same.reshape(-1, 2)), hashes


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


# --- the files a build writes ----------------------------------------------------------------------

def write_reports(out: str, near: pd.DataFrame, conflicts: pd.DataFrame, paths: Dict[str, str]) -> None:
    """``near_duplicates.csv``, ``label_conflicts.csv`` and (when there are conflicts) the contact sheet."""
    fs.write_text_atomic(fs.join(out, NEAR_DUPLICATES), near.to_csv(index=False))
    fs.write_text_atomic(fs.join(out, LABEL_CONFLICTS), conflicts.to_csv(index=False))
    sheet = fs.join(out, CONTACT_SHEET)
    if len(conflicts):
        fs.write_bytes_atomic(sheet, contact_sheet(conflicts, paths))
    elif fs.exists(sheet):
        fs.remove(sheet)


def contact_sheet(conflicts: pd.DataFrame, paths: Dict[str, str], height: int = 150) -> bytes:
    """A PNG with each conflicting pair side by side, both class names under the pictures."""
    from PIL import Image, ImageDraw, ImageFont

    shown = conflicts.head(SHEET_PAIRS)
    font = ImageFont.load_default(size=13)
    cell_w, caption = 2 * height, 52
    sheet = Image.new("RGB", (2 * cell_w + 30, len(shown) * (height + caption + 12) + 30), "white")
    draw = ImageDraw.Draw(sheet)
    title = f"{len(conflicts)} label conflict(s): the same photo under two classes"
    if len(conflicts) > len(shown):
        title += f" (first {len(shown)}; all in {LABEL_CONFLICTS})"
    draw.text((10, 8), title, fill="black", font=font)
    for row, pair in enumerate(shown.itertuples(index=False)):
        top = 30 + row * (height + caption + 12)
        for column, (image_id, model) in enumerate(((pair.image_id_a, pair.model_a), (pair.image_id_b, pair.model_b))):
            left = 10 + column * (cell_w + 10)
            picture = _picture(paths.get(image_id), (cell_w, height))
            if picture is not None:
                sheet.paste(picture, (left, top))
            draw.text((left, top + height + 2), _fit(str(model), font, cell_w), fill=(160, 0, 0), font=font)
            draw.text((left, top + height + 18), _fit(str(image_id), font, cell_w), fill=(90, 90, 90), font=font)
        draw.text((10, top + height + caption - 2), f"pHash distance {pair.distance}, similarity {pair.similarity:.2f}",
                  fill=(90, 90, 90), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", compress_level=1)  # photos barely compress: optimize took 1.8 s of a 20-s build
    return buffer.getvalue()


def _fit(text: str, font, width: int) -> str:
    """``text`` cut from the left ("…" + its end) to fit ``width`` pixels: ids end with the file name."""
    if font.getlength(text) <= width:
        return text
    low, high = 1, len(text)  # the fewest characters to cut (binary search: a long id took 40 measurements)
    while low < high:
        middle = (low + high) // 2
        if font.getlength("…" + text[middle:]) <= width:
            high = middle
        else:
            low = middle + 1
    return "…" + text[low:]


def _picture(path: Optional[str], box: Tuple[int, int]):
    try:
        image = open_image(fs.read_bytes(path))
        image.draft("RGB", box)
        image = to_rgb(image)
    except Exception:  # the sheet still shows the names
        return None
    image.thumbnail(box)
    return image
