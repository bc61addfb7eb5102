"""Where a model's data is: the manifest it was trained with, its shards, and the run's config.

A run folder (``training.fit``) and an export folder (``eval.export``) hold a copy of the manifest,
so class names are always at hand; the shards are found through ``--data``, the run's
``config.yaml`` (``data.shards``) or the manifest's own folder. Whatever supplies the shards must
have the same class lists as the model's manifest, or class ids would silently mean other classes.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
from typing import Dict, List, Optional, Sequence

from common import fs
from common.errors import UserError
from data_prep.manifest import MANIFEST, head_names, load_manifest
from training.config import config_from_dict, read_yaml


@dataclasses.dataclass
class DataSource:
    """The manifest a model was trained with and, where they can be found, the shards it describes."""

    manifest: dict
    where: str  # the manifest's folder (for messages)
    shards: Optional[str]  # folder the manifest's shard paths are relative to; None when not found
    hint: str = ""  # why the shards were not found

    def require_shards(self) -> str:
        if self.shards is None:
            raise UserError(f"the shards of the manifest in {self.where} cannot be found{self.hint}: pass --data with "
                            "the shards folder (the --out of python -m data_prep.build)")
        return self.shards


def output_folder(out: Optional[str], default: str, own: Sequence[str], command: str, flag: str = "--out") -> str:
    """Where a command writes: ``out`` when given, proved writable now (before any long work);
    otherwise ``default`` (beside the model); when the model's folder is read-only (a dataset attached
    on Kaggle, a shared drive), the same name in the working folder, said in one line. The folder is
    new, empty or holds only what ``command`` writes (``own``: name patterns) — never a run's or a
    dataset's folder."""
    fs.refuse_foreign(out or default, own, flag if out else "the default report folder", command)
    if out:
        fs.ensure_writable_folder(out, flag)
        return out
    try:
        fs.ensure_writable_folder(default, flag)
        return default
    except UserError:
        if fs.is_remote(default):
            raise
    here = os.path.join(os.getcwd(), f"{os.path.basename(parent(default))}_{os.path.basename(default)}")
    fs.refuse_foreign(here, own, "the report folder", command)
    try:
        fs.ensure_writable_folder(here, flag)
    except UserError:
        raise UserError(f"{flag}: neither {parent(default)} (the model's folder) nor the working folder "
                        f"{os.getcwd()} can be written; choose a folder you can write to with {flag}") from None
    print(f"{parent(default)} cannot be written (read-only?): writing to {here} instead ({flag} chooses)")
    return here


def model_folders(model_path: str) -> List[str]:
    """The model's folder and its parent (a SavedModel folder inside an export or run folder)."""
    folder = model_path.rstrip("/") if fs.isdir(model_path) else parent(model_path)
    return [folder, parent(folder)]


def parent(path: str) -> str:
    """The folder holding ``path`` (absolute for local paths; gs:// paths keep their scheme)."""
    if fs.is_remote(path):
        return posixpath.dirname(path.rstrip("/"))
    return os.path.dirname(os.path.abspath(path))


def _has_shards(folder: str, manifest: dict) -> bool:
    shards = [shard for split in manifest["splits"].values() for shard in split.get("shards", [])]
    return bool(shards) and fs.exists(fs.join(folder, shards[0]["path"]))


def _trained_on(folder: str) -> Optional[str]:
    """``data.shards`` of the run's ``config.yaml`` in ``folder``, if any."""
    path = fs.join(folder, "config.yaml")
    if not fs.exists(path):
        return None
    try:
        shards = (read_yaml(path).get("data") or {}).get("shards")
    except (UserError, AttributeError):
        return None
    return shards if isinstance(shards, str) and shards else None


def differing_heads(ours: dict, theirs: dict, heads) -> List[str]:
    """Heads whose class names (and so class ids) differ between two manifests."""
    return [head for head in heads if head_names(ours, head) != head_names(theirs, head)]


def _checked(copy: dict, data_dir: str, where: str) -> dict:
    data = load_manifest(data_dir)
    differ = differing_heads(copy, data, [head for head in copy["heads"] if head in data["heads"]])
    missing = [head for head in copy["heads"] if head not in data["heads"]]
    if differ or missing:
        raise UserError(f"the manifest in {data_dir} does not match the one the model was trained with ({where}): "
                        f"{', '.join(differ + missing)} class lists differ. Evaluate on the shards it was trained "
                        "with, or retrain")
    return data


def find_data(model_path: str, data: Optional[str] = None) -> DataSource:
    """The manifest and shards for a model: ``--data`` when given (checked against the run's own
    copy of the manifest, if any); else the ``manifest.json`` next to the model (its run or export
    folder), whose shards are those of the run's ``config.yaml`` or that folder itself."""
    copy_dir = next((f for f in model_folders(model_path) if f and fs.exists(fs.join(f, MANIFEST))), None)
    if data:
        if copy_dir is None:
            return DataSource(load_manifest(data), data, data)
        return DataSource(_checked(load_manifest(copy_dir), data, copy_dir), data, data)
    if copy_dir is None:
        where = " or ".join(f for f in model_folders(model_path) if f)
        raise UserError(f"no manifest.json next to the model (looked in {where}): pass --data with the shards "
                        "folder (python -m data_prep.build)")
    manifest = load_manifest(copy_dir)
    if _has_shards(copy_dir, manifest):
        return DataSource(manifest, copy_dir, copy_dir)
    trained_on = _trained_on(copy_dir)
    if trained_on and fs.exists(fs.join(trained_on, MANIFEST)):
        return DataSource(_checked(manifest, trained_on, copy_dir), trained_on, trained_on)
    hint = f" (the run was trained on {trained_on!r}, which has no manifest.json)" if trained_on else ""
    return DataSource(manifest, copy_dir, None, hint)


def training_config(model_path: str):
    """The run's ``config.yaml`` next to the model (or its export), parsed; None when absent or foreign."""
    for folder in model_folders(model_path):
        path = fs.join(folder, "config.yaml")
        if fs.exists(path):
            try:
                return config_from_dict(read_yaml(path))
            except UserError:  # from another version of the project: evaluate with the defaults
                return None
    return None


def check_heads(heads: Dict[str, int], manifest: dict) -> List[str]:
    """The model's heads (``{name: classes}``) must be heads of the manifest with as many classes."""
    expected = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
    if any(expected.get(head) != n for head, n in heads.items()):
        model_side = ", ".join(f"{h} ({n} classes)" for h, n in heads.items())
        data_side = ", ".join(f"{h} ({n} classes)" for h, n in expected.items())
        raise UserError(f"the model's heads do not match the manifest: the model has {model_side}; the manifest has "
                        f"{data_side}")
    return list(heads)


def class_names(manifest: dict, heads) -> Dict[str, List[str]]:
    return {head: head_names(manifest, head) for head in heads}


def model_to(manifest: dict, head: str) -> Optional[List[int]]:
    """For each model class, the id of its ``head`` class (make, type, year); None if not a function."""
    return (manifest.get("hierarchy") or {}).get("model", {}).get(head)
