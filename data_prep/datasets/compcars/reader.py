"""CompCars (web-nature) reader: ``image/``, ``label/``, ``misc/``, ``train_test_split/``.

The base folder may be the root, ``root/data`` or ``root/data/data`` (extractions differ).
Per image ``image/<make_id>/<model_id>/<year>/<name>.jpg`` with ``label/…/<name>.txt`` holding
``viewpoint`` / ``1`` / ``x1 y1 x2 y2``. Names come from ``misc/make_model_name.mat``, body types
from ``misc/attributes.txt`` (type 0 = unknown) and ``misc/car_type.mat``. Year folders such as
``unknown`` or ``5008`` become an unknown year. Facts: ``../shared/datasets.md`` §2.
"""
from __future__ import annotations

import collections
import concurrent.futures
import posixpath
from typing import Dict, List, Optional, Tuple

from common import fs
from data_prep.images import is_photo_name, not_a_photo
from data_prep.matfile import cell_strings, load_mat
from data_prep.readers import Layout, ReadOptions, first_existing
from data_prep.table import DatasetTable, make_rejects, make_table

DATASET = "compcars"
HEADS = ("make", "model", "year", "type", "viewpoint")
BASES = ("", "data", "data/data")
VIEWPOINTS = {1: "front", 2: "rear", 3: "side", 4: "front-side", 5: "rear-side"}
YEAR_RANGE = (1900, 2030)

# Known misspellings and duplicate spellings in make_names (after stripping whitespace); applied
# with --clean-names (the default) and recorded in the manifest. Lotus appears twice with the
# same spelling (ids 133 and 141): cleaning merges them because make labels are names.
MAKE_NAME_CORRECTIONS = {
    "BWM": "BMW",
    "Buck": "Buick",
    "Chrey": "Chery",
    "Lamorghini": "Lamborghini",
    "AC Chnitzer": "AC Schnitzer",
    "Zoyte": "Zotye",
    "Chevy": "Chevrolet",
    "Benz": "Mercedes-Benz",
    "SAAB": "Saab",
}


def locate(root: str) -> Optional[str]:
    def is_base(path: str) -> bool:
        return all(fs.isdir(fs.join(path, name)) for name in ("image", "label", "misc"))

    return first_existing(root, BASES, is_base)


def parse_year(folder: str) -> Optional[str]:
    """The year folder as text, or ``None`` for ``unknown`` and impossible years such as 5008."""
    return folder if folder.isdigit() and YEAR_RANGE[0] <= int(folder) <= YEAR_RANGE[1] else None


def parse_label(text: str) -> Tuple[int, Tuple[int, int, int, int]]:
    """``(viewpoint, (x1, y1, x2, y2))`` from a label file; ``ValueError`` when malformed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 3:
        raise ValueError(f"expected 3 lines (viewpoint, box count, box), got {len(lines)}")
    viewpoint = int(lines[0])
    box = tuple(int(float(value)) for value in lines[2].split())
    if len(box) != 4:
        raise ValueError(f"expected 'x1 y1 x2 y2', got {lines[2]!r}")
    return (viewpoint if viewpoint in VIEWPOINTS else -1), box


def read_attributes(path: str) -> Dict[int, int]:
    """model_id → type id from ``attributes.txt`` (header skipped; type 0 means unknown)."""
    types = {}
    for line in fs.read_text(path).splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0].isdigit():
            types[int(fields[0])] = int(float(fields[5]))
    return types


def read_split_lists(base: str) -> Dict[str, str]:
    """image path (``make/model/year/name.jpg``) → ``train``/``test`` from the official lists."""
    folder = fs.join(base, "train_test_split", "classification")
    assignment = {}
    for split in ("train", "test"):
        path = fs.join(folder, f"{split}.txt")
        if fs.exists(path):
            for line in fs.read_text(path).splitlines():
                if line.strip():
                    assignment[line.strip()] = split
    return assignment


def make_labels(make_names: List[Optional[str]], clean: bool) -> Dict[int, str]:
    """make_id → label. Cleaned: corrected names (duplicates merge). Raw: one label per id."""
    labels = {}
    for make_id, name in enumerate(make_names, start=1):
        name = name or f"make {make_id}"
        labels[make_id] = MAKE_NAME_CORRECTIONS.get(name, name) if clean else name
    if not clean:  # keep the dataset's ids distinct even where two ids share a spelling
        counts = collections.Counter(labels.values())
        labels = {make_id: (f"{name} [{make_id}]" if counts[name] > 1 else name)
                  for make_id, name in labels.items()}
    return labels


def model_labels(pairs, make_label: Dict[int, str], model_names: List[Optional[str]]) -> Dict[int, Tuple[str, str]]:
    """model_id → (``"make model"`` label, model name) for the (make_id, model_id) pairs in use."""
    result = {}
    for make_id, model_id in sorted(pairs):
        make = make_label[make_id]
        name = model_names[model_id - 1] or f"model {model_id}"
        label = name if name.lower().startswith(make.lower() + " ") else f"{make} {name}"
        result[model_id] = (label, name)
    counts = collections.Counter(label for label, _ in result.values())
    return {model_id: ((f"{label} [{model_id}]" if counts[label] > 1 else label), name)
            for model_id, (label, name) in result.items()}


def read_labels(base: str, paths: List[str]) -> Dict[str, object]:
    """Read the label file of every image path (threads: remote buckets answer slowly)."""
    def read_one(path: str):
        label_path = fs.join(base, "label", posixpath.splitext(path)[0] + ".txt")
        try:
            data = fs.read_bytes(label_path)
        except Exception:  # local FileNotFoundError or gfile's NotFoundError
            if fs.exists(label_path):
                raise
            return "missing label file: no label/<same path>.txt for this image"
        try:
            return parse_label(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            return f"bad label file: {error}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(paths, pool.map(read_one, paths)))


def read(base: str, options: ReadOptions) -> DatasetTable:
    misc = fs.join(base, "misc")
    names_path = fs.join(misc, "make_model_name.mat")
    names = load_mat(names_path)
    make_names = cell_strings(names, "make_names", names_path)
    model_names = cell_strings(names, "model_names", names_path)
    type_path = fs.join(misc, "car_type.mat")
    type_names = cell_strings(load_mat(type_path), "types", type_path)
    attributes_path = fs.join(misc, "attributes.txt")
    model_types = read_attributes(attributes_path) if fs.exists(attributes_path) else {}
    split_of = read_split_lists(base)

    files = [path for path in fs.walk_files(fs.join(base, "image")) if not posixpath.basename(path).startswith(".")]
    paths = [path for path in files if is_photo_name(path)]
    rejects = [{"image_id": "image/" + path, "stage": "read", "reason": not_a_photo(path)}
               for path in files if not is_photo_name(path)]
    candidates = []
    for path in paths:
        parts = path.split("/")
        image_id = "image/" + path
        if len(parts) != 4 or not (parts[0].isdigit() and parts[1].isdigit()):
            rejects.append({"image_id": image_id, "stage": "read",
                            "reason": "unexpected path: expected image/<make_id>/<model_id>/<year>/<name>"})
        elif not (1 <= int(parts[0]) <= len(make_names) and 1 <= int(parts[1]) <= len(model_names)):
            rejects.append({"image_id": image_id, "stage": "read",
                            "reason": f"label out of range: make {parts[0]} / model {parts[1]} not in "
                                      f"make_model_name.mat (1..{len(make_names)} / 1..{len(model_names)})"})
        else:
            candidates.append(path)
    on_disk = set(paths)
    for listed in sorted(split_of):
        if listed not in on_disk:
            rejects.append({"image_id": "image/" + listed, "stage": "read",
                            "reason": "missing file: listed in train_test_split but not on disk"})

    labels = read_labels(base, candidates)
    make_label = make_labels(make_names, options.clean_names)
    models = model_labels({(int(p.split("/")[0]), int(p.split("/")[1])) for p in candidates},
                          make_label, model_names)
    rows = []
    for path in candidates:
        make_id, model_id, year = int(path.split("/")[0]), int(path.split("/")[1]), path.split("/")[2]
        label = labels[path]
        if isinstance(label, str):
            rejects.append({"image_id": "image/" + path, "stage": "read", "reason": label})
            continue
        viewpoint, (x1, y1, x2, y2) = label
        type_id = model_types.get(model_id, 0)
        rows.append({
            "image_path": "image/" + path, "image_id": "image/" + path,
            "source_split": split_of.get(path), "make": make_label[make_id],
            "model": models[model_id][0], "model_name": models[model_id][1], "year": parse_year(year),
            "type": type_names[type_id - 1] if 1 <= type_id <= len(type_names) else None,
            "viewpoint": viewpoint, "bbox_x1": x1, "bbox_y1": y1, "bbox_x2": x2, "bbox_y2": y2,
            "class_id": model_id,
        })
    used = {make_names[int(p.split("/")[0]) - 1] for p in candidates}
    notes = {"bbox": "annotated", "clean_names": options.clean_names,
             "make_name_corrections": {raw: clean for raw, clean in MAKE_NAME_CORRECTIONS.items()
                                       if raw in used} if options.clean_names else {},
             "viewpoint_codes": {str(code): name for code, name in VIEWPOINTS.items()}}
    return DatasetTable(dataset=DATASET, layout="web_nature", base=base, table=make_table(rows),
                        rejected=make_rejects(rejects), heads=HEADS, notes=notes)


WEB_NATURE = Layout("web_nature", "image/, label/ and misc/ under the root, root/data/ or root/data/data/",
                    locate, read)
