"""``manifest.json``: the single source of truth about a built dataset.

It records the dataset and layout, every head's vocabulary (id → name), per split the number of
examples, class counts per head and the shards (path relative to the manifest, examples, bytes,
sha256), the build options, what was rejected, dropped or excluded, the near-duplicate report,
and the version and creation time. Later stages read heads and shard lists only from here.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

from common import fs
from common.errors import UserError
from data_prep import __version__, schema

MANIFEST = "manifest.json"
REJECTED = "rejected.csv"
FORMAT = "car-recognition-tfrecords"


def vocabulary_entry(names: List[str]) -> dict:
    return {"num_classes": len(names), "names": {str(index): name for index, name in enumerate(names)}}


def head_names(manifest: dict, head: str) -> List[str]:
    """The vocabulary of ``head`` as a list indexed by class id."""
    names = manifest["heads"][head]["names"]
    return [names[str(index)] for index in range(len(names))]


def split_entry(parts: List[dict], counts: dict) -> dict:
    shards = [{"path": part["name"], "examples": part["examples"], "bytes": part["bytes"],
               "sha256": part["sha256"]} for part in sorted(parts, key=lambda part: part["name"])]
    return {"examples": sum(shard["examples"] for shard in shards), "class_counts": counts,
            "shards": shards}


def build_manifest(*, dataset: str, layout: str, heads: Dict[str, List[str]], splits: Dict[str, dict],
                   options: dict, created: str, rejected: dict, dropped: dict, excluded: int,
                   near_duplicates: dict, conversions: dict, notes: dict, hierarchy: dict,
                   label_conflicts: Optional[dict] = None) -> dict:
    """Assemble the manifest dictionary (keys documented in docs/data.md)."""
    return {
        "format": FORMAT,
        "schema_version": schema.SCHEMA_VERSION,
        "data_prep_version": __version__,
        "created": created,
        "dataset": dataset,
        "layout": layout,
        "features": {"image": schema.IMAGE, "height": schema.HEIGHT, "width": schema.WIDTH,
                     "id": schema.IMAGE_ID, "bbox": schema.BBOX, "viewpoint": schema.VIEWPOINT,
                     "labels": {head: schema.label_key(head) for head in heads},
                     "unknown_label": -1},
        "heads": {head: vocabulary_entry(names) for head, names in heads.items()},
        "hierarchy": {"model": hierarchy},  # model class id → id of its make / type / year
        # the heads whose class name every model name holds (Stanford Cars: make, type, year): what
        # data_prep.verify checks the names against
        "model_names_contain": named_in_models(heads, hierarchy),
        "splits": splits,
        "options": options,
        "rejected": rejected,
        "dropped_classes": dropped,
        "excluded_outside_split": excluded,
        "near_duplicates": near_duplicates,
        "label_conflicts": label_conflicts or {"pairs": 0, "groups": 0, "images": 0, "action": "report"},
        "conversions": conversions,
        "notes": notes,
    }


def write_manifest(out: str, manifest: dict) -> str:
    path = fs.join(out, MANIFEST)
    fs.write_text_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def load_manifest(path_or_folder: str) -> dict:
    """Read a manifest (given the file or its folder), with a clear error when it is not one."""
    path = path_or_folder
    if not path.endswith(".json"):
        path = fs.join(path_or_folder, MANIFEST)
    if not fs.exists(path):
        raise UserError(f"no manifest at {path!r}: expected the --out folder of "
                        "'python -m data_prep.build' (it writes manifest.json last)")
    try:
        manifest = json.loads(fs.read_text(path))
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a dataset manifest written by data_prep (format {FORMAT!r})")
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise UserError(f"{path} uses record schema {manifest.get('schema_version')}, this code "
                        f"reads schema {schema.SCHEMA_VERSION}: rebuild the shards")
    return manifest


def shard_paths(manifest_folder: str, manifest: dict, split: str) -> List[str]:
    """Full paths of a split's shards (an error names the splits that exist)."""
    if split not in manifest["splits"]:
        raise UserError(f"split {split!r} is not in the manifest; it has: "
                        f"{', '.join(manifest['splits']) or 'no splits'}")
    return [fs.join(manifest_folder, shard["path"]) for shard in manifest["splits"][split]["shards"]]


def data_differences(saved: dict, current: dict) -> List[str]:
    """How the data of ``current`` differ from ``saved`` (two manifests): the heads and their classes,
    the class hierarchy, and each split's records (their checksums, not where the shards lie). An
    empty list means the same dataset, wherever it was moved."""
    differences = []
    for head in sorted(set(saved.get("heads", {})) | set(current.get("heads", {}))):
        if saved.get("heads", {}).get(head) != current.get("heads", {}).get(head):
            differences.append(f"the classes of head {head} differ")
    if saved.get("hierarchy") != current.get("hierarchy"):
        differences.append("the class hierarchy differs")
    for split in sorted(set(saved.get("splits", {})) | set(current.get("splits", {}))):
        records = [[shard.get("sha256") for shard in manifest.get("splits", {}).get(split, {}).get("shards", [])]
                   for manifest in (saved, current)]
        if records[0] != records[1]:
            differences.append(f"the records of the {split} split differ")
    return differences


def _misnamed(models: List[str], names: List[str], parents: List[int]) -> List[Tuple[int, int]]:
    """(model id, parent id) pairs of the hierarchy whose model name does not hold the parent's name."""
    return [(model, parent) for model, parent in enumerate(parents)
            if 0 <= parent < len(names) and model < len(models)
            and names[parent].casefold() not in models[model].casefold()]


def named_in_models(heads: Dict[str, List[str]], hierarchy: Dict[str, List[int]]) -> List[str]:
    """The heads of ``hierarchy`` whose class name is part of every model name filed under it."""
    models = heads.get("model", [])
    return sorted(head for head, parents in hierarchy.items()
                  if head in heads and any(parent >= 0 for parent in parents)
                  and not _misnamed(models, heads[head], parents))


def hierarchy_problems(manifest: dict, shown: int = 5) -> List[str]:
    """Class names that disagree with the hierarchy: a model filed under a make (type, year) whose name
    it does not hold, for the heads the build found in every model name (``model_names_contain``;
    in older manifests, those most model names hold). Catches names swapped or edited by hand."""
    if "model" not in manifest.get("heads", {}):
        return []
    models = head_names(manifest, "model")
    problems = []
    for head, parents in sorted(manifest.get("hierarchy", {}).get("model", {}).items()):
        if head not in manifest["heads"]:
            continue
        names = head_names(manifest, head)
        wrong = _misnamed(models, names, parents)
        filed = sum(1 for parent in parents if parent >= 0)
        expected = manifest.get("model_names_contain")
        if (head in expected) if expected is not None else len(wrong) <= filed / 2:
            problems += [f"hierarchy: model class {model} {models[model]!r} is filed under {head} {parent} "
                         f"{names[parent]!r}, but its name does not contain that {head} (class names swapped "
                         "or edited in the manifest?)" for model, parent in wrong[:shown]]
            if len(wrong) > shown:
                problems.append(f"hierarchy: … and {len(wrong) - shown} more model classes whose name does not "
                                f"contain its {head}")
    return problems


def data_card(manifest: dict) -> dict:
    """What a model card says of the data a model learnt from: the dataset, whether it was synthetic
    (recorded by the build; else judged from its root, when that is here), the classes per head."""
    root = manifest.get("options", {}).get("root") or ""
    synthetic = manifest.get("notes", {}).get("synthetic")
    if synthetic is None:  # built before the build recorded it
        synthetic = bool(root) and not fs.is_remote(root) and os.path.exists(os.path.join(root, "SYNTHETIC.json"))
    return {"dataset": manifest.get("dataset", "unknown"), "layout": manifest.get("layout"),
            "synthetic": bool(synthetic),
            "classes": {head: entry["num_classes"] for head, entry in manifest.get("heads", {}).items()},
            "data_built": manifest.get("created")}
