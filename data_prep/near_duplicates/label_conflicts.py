"""Stage 3 of near-duplicate detection: verified pairs whose ``model`` labels differ (*label
conflicts*), and what the build does with them (``--label-conflicts``): ``report`` (default),
``drop`` every member of a conflicting group, or ``keep`` one copy under the label named in
``--conflict-labels`` (a CSV with ``image_id,model``).
"""
from __future__ import annotations

import dataclasses
import io
import logging
from typing import Dict, List, Tuple

import pandas as pd

from common import fs
from common.errors import UserError, describe_choices
from data_prep.near_duplicates.contact_sheet import LABEL_CONFLICTS
from data_prep.table import DatasetTable, make_rejects

LOG = logging.getLogger("data_prep.near_duplicates")
ACTIONS = ("report", "drop", "keep")


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


