"""Near-duplicates verified as the same photo, and label conflicts (the same photo under two labels):
the verification on its own, builds of synthetic trees with planted copies, conflicts and
look-alikes, the options that act on conflicts, and the real Stanford Cars photos where present."""
from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from common.errors import UserError
from data_prep.near_duplicates import contact_sheet, pairs as duplicates, same_photo as samephoto
from data_prep.build import build_dataset, main as build_main
from data_prep.images import perceptual_hash
from data_prep.synthetic import catalog, generate
from data_prep.synthetic.draw import draw_car
from data_prep.synthetic.generate import lookalike_pair
from tests.helpers import REALDATA, build_options

PHOTOS = REALDATA / "photos"
JUDGED = pd.read_csv(__file__.rsplit("/", 1)[0] + "/data/real_photo_pairs.csv", comment="#")


def picture(seed=3, size=(320, 240)):
    image, _ = draw_car(catalog.stanford_classes(2, 2, 0)[1], np.random.default_rng(seed), *size, 3)
    return image


def jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


COPIES = {
    "half size": lambda im: im.resize((im.width // 2, im.height // 2)),
    "JPEG quality 30": lambda im: jpeg(im, 30),
    "3% cropped off each side": lambda im: im.crop((int(.03 * im.width), int(.03 * im.height),
                                                    im.width - int(.03 * im.width), im.height - int(.03 * im.height))),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "red and blue swapped": lambda im: Image.merge("RGB", im.split()[::-1]),
}


@pytest.mark.parametrize("kind", list(COPIES))
def test_a_copy_is_the_same_photo(kind):
    original = picture()
    copy = COPIES[kind](original)
    assert samephoto.similarity(samephoto.thumbnail(original), samephoto.thumbnail(copy)) >= samephoto.SAME_PHOTO


def test_the_fine_crops_are_searched_only_past_the_coarse_gate(monkeypatch):
    """A copy reaches the coarse gate and gets the full 256-crop search (the same value as searching
    them directly); a different picture stops at the 16 coarse crops."""
    grids = []
    correlations = samephoto._crop_correlations
    monkeypatch.setattr(samephoto, "_crop_correlations",
                        lambda picture, grid, targets: grids.append(grid) or correlations(picture, grid, targets))
    original = samephoto.thumbnail(picture(3))
    crops = samephoto.Crops(original)
    copy = samephoto.signature(samephoto.thumbnail(COPIES["3% cropped off each side"](picture(3)))).whole
    other = samephoto.signature(samephoto.thumbnail(picture(7))).whole
    values = crops.best(np.stack([copy, other]))
    fine = correlations(crops.picture, samephoto.FINE, np.stack([copy, other]).astype(np.float32).reshape(2, -1))
    assert values[0] == pytest.approx(fine[0]) and values[0] >= samephoto.SAME_PHOTO
    assert values[1] < samephoto.COARSE_GATE and grids == [samephoto.COARSE, samephoto.FINE]
    grids.clear()
    assert crops.best(other[None])[0] == pytest.approx(values[1], abs=1e-6)
    assert grids == [samephoto.COARSE]  # no fine search at all


def test_a_look_alike_is_paired_by_phash_but_not_verified():
    pictures = lookalike_pair(catalog.stanford_classes(3, 2, 0), np.random.default_rng(5), 0, (3,), (320, 240))
    first, second = (Image.open(io.BytesIO(p.data)) for p in pictures)
    assert pictures[0].class_index != pictures[1].class_index
    distance = bin(int(perceptual_hash(first), 16) ^ int(perceptual_hash(second), 16)).count("1")
    assert distance <= 10  # pHash alone would call them near-duplicates
    assert samephoto.similarity(samephoto.thumbnail(first), samephoto.thumbnail(second)) < samephoto.SAME_PHOTO
    different = samephoto.similarity(samephoto.thumbnail(picture(3)), samephoto.thumbnail(picture(4)))
    assert different < samephoto.SAME_PHOTO


def test_verification_reads_each_image_at_most_twice_and_workers_change_nothing(tmp_path, monkeypatch):
    """One picture, six copies of it and six other pictures, all taken as pHash candidates of each
    other: 78 pairs, yet each image is decoded at most twice (signature, then crops for all its
    partners); two worker processes give the same similarities as one, and as the in-memory
    comparison of the thumbnails; every copy is found."""
    pictures = [picture(3)] + [make(picture(3)) for make in COPIES.values()] + [COPIES["JPEG quality 30"](picture(3))]
    pictures += [picture(seed) for seed in range(10, 16)]
    paths = []
    for number, image in enumerate(pictures):
        paths.append(str(tmp_path / f"{number:02d}.jpg"))
        image.save(paths[-1], quality=90)
    index = np.array([(a, b) for a in range(len(paths)) for b in range(a + 1, len(paths))], dtype=np.int64)
    reads = []
    real_read = samephoto.fs.read_bytes
    monkeypatch.setattr(samephoto.fs, "read_bytes", lambda path: reads.append(path) or real_read(path))
    inline = duplicates.verify(index, paths, workers=1)
    assert max(reads.count(path) for path in paths) <= 2 and len(reads) <= 2 * len(paths)
    monkeypatch.undo()
    monkeypatch.setattr(duplicates, "POOL_FROM", 1)  # two processes even for 13 images
    assert np.allclose(duplicates.verify(index, paths, workers=2), inline, equal_nan=True)
    thumbnails = {number: samephoto.thumbnail_of_bytes(open(path, "rb").read()) for number, path in enumerate(paths)}
    assert np.allclose(samephoto.similarities(index, thumbnails), inline, atol=1e-3)
    same = {tuple(pair) for pair in index[inline >= samephoto.SAME_PHOTO]}
    copies = set(range(len(COPIES) + 2))
    assert all((0, b) in same for b in copies - {0})  # every copy is found


def test_a_pair_whose_image_cannot_be_read_is_not_verified(tmp_path):
    """An image unreadable at the signature pass, or gone by the crop search: its pairs get NaN (not
    verified, not a look-alike either), and the other pairs are unaffected."""
    paths = []
    for number, image in enumerate([picture(3), COPIES["half size"](picture(3)), COPIES["brighter"](picture(3))]):
        paths.append(str(tmp_path / f"{number}.jpg"))
        image.save(paths[-1], quality=90)
    index = np.array([[0, 1], [0, 2], [1, 2]], dtype=np.int64)
    assert (duplicates.verify(index, paths) >= samephoto.SAME_PHOTO).all()
    (tmp_path / "2.jpg").write_bytes(b"not a JPEG any more")
    values = duplicates.verify(index, paths)
    assert values[0] >= samephoto.SAME_PHOTO and np.isnan(values[1:]).all()
    reads = []

    def vanishing(path):  # readable once (the signature), gone for the crop search
        reads.append(path)
        if path.endswith("1.jpg") and reads.count(path) > 1:
            raise FileNotFoundError(path)
        return open(path, "rb").read()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(samephoto.fs, "read_bytes", vanishing)
        values = duplicates.verify(index[:1], paths)
    assert np.isnan(values).all()


@pytest.mark.parametrize("text", ["00050.jpg", "car_data/car_data/train/Bentley Continental GT Coupe 2012/00050.jpg",
                                  "x" * 400])
def test_contact_sheet_captions_keep_the_end_of_a_long_id(text):
    """An id too wide for its picture loses its beginning, not its file name: the longest end that
    fits after "…" (and a short one is left alone)."""
    from PIL import ImageFont

    font, width = ImageFont.load_default(size=13), 300
    fitted = contact_sheet._fit(text, font, width)
    assert font.getlength(fitted) <= width
    if fitted != text:
        kept = fitted[1:]
        assert fitted.startswith("…") and text.endswith(kept)
        assert font.getlength("…" + text[len(text) - len(kept) - 1:]) > width  # one character more would not fit


@pytest.fixture(scope="module")
def conflict_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("conflicts")
    truth = generate("stanford_cars", str(root), "devkit", makes=3, models_per_make=3, images_per_model=8, seed=4,
                     label_conflicts=3, lookalikes=5)
    return root, truth


def pairs_of(path):
    return {frozenset((row["image_id_a"], row["image_id_b"])) for row in csv.DictReader(open(path))}


@pytest.fixture(scope="module")
def reported(conflict_tree, tmp_path_factory):
    root, truth = conflict_tree
    out = tmp_path_factory.mktemp("reported")
    return out, build_dataset(build_options(root, out, split="stratified")), truth


def test_every_build_reports_verified_pairs_and_label_conflicts(reported):
    out, manifest, truth = reported
    near = pairs_of(out / "near_duplicates.csv")
    planted = [frozenset(pair) for pair in truth["near_duplicates"]]
    assert sum(pair in near for pair in planted) >= len(planted) - 1  # the re-posted copies are found
    assert not any(frozenset(pair) in near for pair in truth["lookalikes"])  # no look-alike is "the same photo"
    conflicts = pairs_of(out / "label_conflicts.csv")
    assert all(frozenset(pair) in conflicts for pair in truth["label_conflicts"])
    rows = list(csv.DictReader(open(out / "label_conflicts.csv")))
    assert all(row["model_a"] != row["model_b"] and row["action"] == "reported" for row in rows)
    assert set(rows[0]) >= {"image_id_a", "image_id_b", "split_a", "split_b", "model_a", "model_b", "distance",
                            "similarity"}
    assert (out / "label_conflicts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entry = manifest["near_duplicates"]
    assert entry["pairs"] == len(near) and entry["candidates"] == entry["pairs"] + entry["lookalikes"]
    assert entry["lookalikes"] >= 3  # the planted look-alikes were candidates and were set aside
    assert manifest["label_conflicts"]["pairs"] == len(rows) and manifest["label_conflicts"]["action"] == "report"
    assert manifest["splits"]["train"]["examples"] + manifest["splits"]["val"]["examples"] + \
        manifest["splits"]["test"]["examples"] == truth["images"] - manifest["rejected"]["count"]  # nothing dropped


def records(out):
    """``{image id: model class}`` of every record in the shards of ``out``."""
    import tensorflow as tf

    from data_prep import schema

    features = {schema.IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
                schema.label_key("model"): tf.io.FixedLenFeature([], tf.int64)}
    found = {}
    for path in sorted(out.glob("*.tfrec")):
        for record in tf.data.TFRecordDataset(str(path)):
            parsed = tf.io.parse_single_example(record, features)
            found[parsed[schema.IMAGE_ID].numpy().decode()] = int(parsed[schema.label_key("model")].numpy())
    return found


def written_ids(out):
    return set(records(out))


def test_drop_leaves_out_every_copy_of_a_conflict_and_lists_them(conflict_tree, reported, tmp_path):
    root, truth = conflict_tree
    out = tmp_path / "dropped"
    manifest = build_dataset(build_options(root, out, split="stratified", label_conflicts="drop",
                                           max_reject_fraction=0.04, accept_rejects=False))  # bad files: 3.4%
    members = {image_id for pair in pairs_of(reported[0] / "label_conflicts.csv") for image_id in pair}
    assert members and not members & written_ids(out)
    rejected = pd.read_csv(out / "rejected.csv")
    assert set(rejected.loc[rejected["stage"] == "label_conflict", "image_id"]) == members
    assert manifest["rejected"]["fraction"] < 0.04  # dropped on request: not counted as broken files
    assert {row["action"] for row in csv.DictReader(open(out / "label_conflicts.csv"))} == {"dropped"}
    assert manifest["label_conflicts"]["action"] == "drop"


def test_keep_keeps_the_named_copy_under_the_named_class(conflict_tree, reported, tmp_path):
    root, truth = conflict_tree
    conflicts = pd.read_csv(reported[0] / "label_conflicts.csv")
    chosen = conflicts.iloc[0]
    choices = tmp_path / "choices.csv"
    choices.write_text(f"image_id,model\n{chosen['image_id_b']},{chosen['model_a']}\n")
    out = tmp_path / "kept"
    manifest = build_dataset(build_options(root, out, split="stratified", label_conflicts="keep",
                                           conflict_labels=str(choices)))
    written = records(out)
    group = conflicts[conflicts["group"] == chosen["group"]]
    members = set(group["image_id_a"]) | set(group["image_id_b"])
    assert set(written) & members == {chosen["image_id_b"]}  # one copy kept, the others dropped
    assert manifest["heads"]["model"]["names"][str(written[chosen["image_id_b"]])] == chosen["model_a"]
    actions = pd.read_csv(out / "label_conflicts.csv").groupby("group")["action"].first()
    assert actions[chosen["group"]] == f"kept {chosen['image_id_b']} as {chosen['model_a']}"
    assert all(actions[other].startswith("reported") for other in actions.index if other != chosen["group"])


@pytest.mark.parametrize("rows, message", [
    ("image_id,model\nnot/in/any.jpg,X\n", "is not in a label conflict"),
    ("image_id,class\na,b\n", "needs the columns image_id and model"),
])
def test_a_bad_conflict_labels_file_is_one_clear_error(conflict_tree, tmp_path, rows, message):
    root, _ = conflict_tree
    choices = tmp_path / "choices.csv"
    choices.write_text(rows)
    with pytest.raises(UserError, match=message):
        build_dataset(build_options(root, tmp_path / "out", split="stratified", label_conflicts="keep",
                                    conflict_labels=str(choices)))


def test_a_conflict_labels_path_that_is_a_folder_is_one_clear_error(conflict_tree, tmp_path):
    root, _ = conflict_tree
    with pytest.raises(UserError, match="--conflict-labels: cannot read"):
        build_dataset(build_options(root, tmp_path / "out", split="stratified", label_conflicts="keep",
                                    conflict_labels=str(tmp_path)))


def test_an_unknown_class_in_conflict_labels_names_the_close_match(conflict_tree, reported, tmp_path):
    root, _ = conflict_tree
    image_id, model = pd.read_csv(reported[0] / "label_conflicts.csv").iloc[0][["image_id_a", "model_a"]]
    choices = tmp_path / "choices.csv"
    choices.write_text(f"image_id,model\n{image_id},{model[:-1]}\n")
    with pytest.raises(UserError, match=f"did you mean '{model}'"):
        build_dataset(build_options(root, tmp_path / "out", split="stratified", label_conflicts="keep",
                                    conflict_labels=str(choices)))


def test_conflict_labels_without_keep_is_refused_on_the_command_line(conflict_tree, tmp_path, capsys):
    root, _ = conflict_tree
    with pytest.raises(UserError, match="--conflict-labels"):
        build_main(["--dataset", "stanford_cars", "--root", str(root), "--out", str(tmp_path / "out"),
                    "--conflict-labels", "x.csv", "--no-progress"])


# --- the real Stanford Cars photos -----------------------------------------------------------------

@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    if not (PHOTOS / "labels.csv").is_file():
        pytest.skip("../shared/realdata/stanford_cars/photos is not available")
    out = tmp_path_factory.mktemp("real")
    manifest = build_dataset(build_options(PHOTOS, out, split="stratified", workers=2))
    labels = pd.read_csv(PHOTOS / "labels.csv")
    image_id = {f"{row.split}/{row.file}": f"car_data/car_data/{row.split}/{row.class_name}/{row.file}"
                for row in labels.itertuples()}
    return out, manifest, image_id


@pytest.mark.slow
def test_real_photos_report_the_real_conflicts_and_no_look_alike(real_build):
    out, manifest, image_id = real_build
    near, conflicts = pairs_of(out / "near_duplicates.csv"), pairs_of(out / "label_conflicts.csv")
    for row in JUDGED.itertuples():
        pair = frozenset((image_id[row.file_a], image_id[row.file_b]))
        if row.judged == "same":
            assert pair in near and pair in conflicts, row.note  # all of them are filed under two classes
        else:
            assert pair not in near, row.note
    same = {frozenset((image_id[r.file_a], image_id[r.file_b])) for r in JUDGED.itertuples() if r.judged == "same"}
    assert near == same  # nothing else among the 825 photos is reported as the same photo
    assert manifest["label_conflicts"]["pairs"] == len(same) and (out / "label_conflicts.png").is_file()
