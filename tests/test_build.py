"""End-to-end builds checked against the synthetic ground truth, plus determinism and split reports."""
import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_prep import schema
from data_prep.build import build_dataset
from data_prep.images import ImageTask, hash_only
from data_prep.manifest import head_names, load_manifest
from data_prep.verify import verify_dataset
from tests.helpers import build_options, read_records


def test_manifest_describes_the_shards(stanford_build):
    out, manifest, truth = stanford_build
    assert manifest == load_manifest(str(out))
    assert set(manifest["splits"]) == {"train", "val", "test"} and manifest["layout"] == "devkit"
    assert list(manifest["heads"]) == ["make", "model", "year", "type"]
    assert head_names(manifest, "model") == sorted({c["name"] for c in truth["classes"]}, key=str.casefold)
    for split, entry in manifest["splits"].items():
        for shard in entry["shards"]:
            total = len(entry["shards"])
            assert shard["path"].startswith(f"{split}-") and shard["path"].endswith(f"-of-{total:05d}.tfrec")
            assert (out / shard["path"]).stat().st_size == shard["bytes"]
    written = sum(entry["examples"] for entry in manifest["splits"].values())
    assert written == truth["images"] - 3  # zero-byte, truncated and missing are rejected
    assert manifest["rejected"]["count"] == 3
    assert manifest["conversions"] == {"grayscale": 1, "CMYK": 1, "format PNG": 1}
    assert manifest["options"]["split"] == "official" and manifest["created"]
    makes, models = head_names(manifest, "make"), head_names(manifest, "model")
    for model_id, make_id in enumerate(manifest["hierarchy"]["model"]["make"]):
        assert models[model_id].startswith(makes[make_id] + " ")  # model → make recorded for evaluation
    assert set(manifest["hierarchy"]["model"]) == {"make", "year", "type"}
    assert set(manifest["near_duplicates"]["cross_split_pairs"]) == {"train/val", "train/test", "val/test", "total"}
    assert verify_dataset(str(out)) == []


def test_rejected_csv_names_every_skipped_image(stanford_build):
    out, _, truth = stanford_build
    rows = list(csv.DictReader(open(out / "rejected.csv")))
    reasons = {row["image_id"]: row["reason"].split(":")[0] for row in rows}
    bad = truth["bad_files"]
    assert reasons == {bad["zero_byte"]: "empty file", bad["truncated"]: "undecodable image",
                       bad["missing"]: "missing file"}


def test_records_carry_the_right_labels_boxes_and_pixels(stanford_build):
    out, manifest, truth = stanford_build
    names = {head: head_names(manifest, head) for head in manifest["heads"]}
    records = read_records(out, manifest)
    ids = [record[schema.IMAGE_ID].decode() for record in records]
    assert len(ids) == len(set(ids))
    for record, image_id in zip(records, ids):
        car = truth["classes"][truth["class_of"][image_id]]
        label = {head: int(record[schema.label_key(head)]) for head in names}
        assert names["model"][label["model"]] == car["name"] and names["make"][label["make"]] == car["make"]
        assert names["year"][label["year"]] == car["year"]
        assert (label["type"] == -1) if car["type"] is None else names["type"][label["type"]] == car["type"]
        image = Image.open(io.BytesIO(record[schema.IMAGE]))
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.size == (record[schema.WIDTH], record[schema.HEIGHT])
        x1, y1, x2, y2 = truth["bbox_of"][image_id]
        expected = ((y1 - 1) / image.height, (x1 - 1) / image.width, y2 / image.height, x2 / image.width)
        np.testing.assert_allclose(record[schema.BBOX], expected, atol=1e-6)
        assert record[schema.VIEWPOINT] == -1
        assert (record["split"] == "test") == image_id.startswith("cars_test/")  # official split kept


def test_manifest_class_counts_match_the_records(stanford_build):
    out, manifest, _ = stanford_build
    for split, entry in manifest["splits"].items():
        records = read_records(out, manifest, split)
        for head, counts in entry["class_counts"].items():
            labels = [int(r[schema.label_key(head)]) for r in records]
            assert counts["per_class"] == [labels.count(i) for i in range(manifest["heads"][head]["num_classes"])]
            assert counts["unknown"] == labels.count(-1)


def test_worker_processes_write_the_same_bytes(stanford_tree, tmp_path):
    root, _ = stanford_tree
    one = build_dataset(build_options(root, tmp_path / "one", workers=1, num_shards=2, split="stratified"))
    two = build_dataset(build_options(root, tmp_path / "two", workers=2, num_shards=2, split="stratified"))
    digests = lambda m: {s: [shard["sha256"] for shard in e["shards"]] for s, e in m["splits"].items()}  # noqa: E731
    assert digests(one) == digests(two) and len(digests(one)["train"]) == 2


def test_a_builds_stages_share_one_pool_of_workers(stanford_tree, tmp_path, monkeypatch):
    """Hashing (grouped split), writing shards and verifying near-duplicates all run on the same two
    worker processes, started once — and give what one process gives."""
    from data_prep import parallel
    from data_prep.near_duplicates import pairs as duplicates

    root, _ = stanford_tree
    monkeypatch.setattr(duplicates, "POOL_FROM", 1)  # verify on the workers even for a small tree
    started = []
    start = parallel._start_pool
    monkeypatch.setattr(parallel, "_start_pool", lambda workers: started.append(workers) or start(workers))
    two = build_dataset(build_options(root, tmp_path / "two", workers=2, split="grouped"))
    assert started == [2]
    with parallel.pool_scope(2):
        with parallel.worker_pool(2) as first:
            assert first.submit(os.getpid).result() != os.getpid()
        with parallel.worker_pool(2) as second:
            assert second is first and second.submit(os.getpid).result() != os.getpid()
    assert started == [2, 2]
    with pytest.raises(RuntimeError, match="shutdown"):  # stopped with its scope
        first.submit(os.getpid)
    one = build_dataset(build_options(root, tmp_path / "one", workers=1, split="grouped"))
    assert one["near_duplicates"] == two["near_duplicates"] and one["splits"] == two["splits"]


def test_grouped_split_keeps_near_duplicates_together(compcars_tree, tmp_path):
    root, truth = compcars_tree
    options = dict(dataset="compcars", val_fraction=0.2, test_fraction=0.3, seed=5)
    stratified = build_dataset(build_options(root, tmp_path / "s", split="stratified", **options))
    grouped = build_dataset(build_options(root, tmp_path / "g", split="grouped", **options))
    assert stratified["near_duplicates"]["cross_split_pairs"]["total"] > 0
    assert grouped["near_duplicates"]["cross_split_pairs"]["total"] == 0
    assert grouped["near_duplicates"]["pairs"] >= len(truth["near_duplicates"]) - 3
    records = read_records(tmp_path / "g", grouped)
    split_of = {r[schema.IMAGE_ID].decode(): r["split"] for r in records}
    base = root / "data"
    linked = 0
    for original, copy in truth["near_duplicates"]:
        if original in split_of and copy in split_of:
            a, b = (int(hash_only(ImageTask(str(base / path), None)).phash, 16) for path in (original, copy))
            if bin(a ^ b).count("1") <= grouped["options"]["hamming_threshold"]:
                linked += 1
                assert split_of[original] == split_of[copy]
    assert linked >= 0.7 * len(truth["near_duplicates"])
    assert list(grouped["heads"]) == ["make", "model", "year", "type", "viewpoint"]
    assert head_names(grouped, "viewpoint") == ["front", "front-side", "rear", "rear-side", "side"]


def test_compcars_official_split_uses_only_listed_images(compcars_tree, tmp_path):
    root, truth = compcars_tree
    manifest = build_dataset(build_options(root, tmp_path / "o", dataset="compcars", split="official"))
    listed = sum(entry["examples"] for entry in manifest["splits"].values())
    assert manifest["excluded_outside_split"] > 0
    assert listed + manifest["excluded_outside_split"] + manifest["rejected"]["count"] == truth["images"]


def test_max_side_and_crop_transform_the_written_images(stanford_tree, stanford_build, tmp_path):
    root, truth = stanford_tree
    out, plain, _ = stanford_build
    small = build_dataset(build_options(root, tmp_path / "small", max_side=96))
    cropped = build_dataset(build_options(root, tmp_path / "crop", crop="bbox", crop_margin=0.0))
    size = lambda m: sum(s["bytes"] for e in m["splits"].values() for s in e["shards"])  # noqa: E731
    assert size(small) < 0.6 * size(plain)
    for record in read_records(tmp_path / "small", small):
        assert max(record[schema.HEIGHT], record[schema.WIDTH]) <= 96
    for record in read_records(tmp_path / "crop", cropped):
        x1, y1, x2, y2 = truth["bbox_of"][record[schema.IMAGE_ID].decode()]
        assert (record[schema.WIDTH], record[schema.HEIGHT]) == (x2 - x1 + 1, y2 - y1 + 1)
        np.testing.assert_allclose(record[schema.BBOX], [0, 0, 1, 1], atol=1e-6)


def test_min_images_drops_classes_and_reports_them(stanford_tree, tmp_path):
    from data_prep.datasets import read_dataset

    root, _ = stanford_tree
    counts = read_dataset("stanford_cars", str(root)).table["model"].value_counts()
    largest = int(counts.max())
    assert int(counts.min()) < largest  # near-copies make class sizes differ
    manifest = build_dataset(build_options(root, tmp_path / "m", min_images=largest))
    assert manifest["dropped_classes"] == {name: int(n) for name, n in counts.items() if n < largest}
    assert head_names(manifest, "model") == sorted(name for name, n in counts.items() if n == largest)


def test_manifest_json_is_plain_and_readable(stanford_build):
    out, _, _ = stanford_build
    text = (out / "manifest.json").read_text()
    assert json.loads(text)["format"] == "car-recognition-tfrecords"
    assert not list(out.glob("*.tmp-*")) and not (out / ".build").exists()
