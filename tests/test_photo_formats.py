"""Photos in every format Pillow reads (HEIC through pillow-heif), the same set for the build, eval.predict
and the listing form; files that are not photos are listed with their reason; EXIF orientation applied
alike when building and when predicting (the box turned with the pixels)."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from data_prep.build import build_dataset
from data_prep.datasets import read_dataset
from data_prep.images import ImageOptions, ImageTask, Processed, PHOTO_SUFFIXES, process
from data_prep.synthetic import generate
from tests.helpers import build_options, read_records

ORIENTATION = 0x0112


def class_folder_tree(root):
    generate("stanford_cars", str(root), "kaggle", makes=2, models_per_make=2, images_per_model=4, seed=5,
             bad_files=False)
    for name in ("anno_train.csv", "anno_test.csv"):
        os.remove(root / name)  # class folders alone: every photo in them is a record
    return next(p for p in sorted((root / "car_data" / "car_data" / "train").iterdir()) if p.is_dir())


def save_formats(folder, picture):
    """The photo in WebP, BMP, TIFF, an animated GIF and HEIC (when pillow-heif is installed), plus a note."""
    names = []
    for name, fmt, options in (("a.webp", "WEBP", {}), ("b.bmp", "BMP", {}), ("c.tiff", "TIFF", {}),
                               ("d.GIF", "GIF", {"save_all": True, "append_images": [picture.rotate(10)]})):
        picture.save(folder / name, fmt, **options)
        names.append(name)
    pytest.importorskip("pillow_heif").register_heif_opener()
    picture.save(folder / "e.HEIC", "HEIF")
    (folder / "notes.txt").write_text("bought in 2012")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    return names + ["e.HEIC"]


def test_every_photo_format_is_read_and_anything_else_is_listed(tmp_path):
    folder = class_folder_tree(tmp_path / "raw")
    picture = Image.open(next(folder.glob("*.jpg"))).convert("RGB")
    names = save_formats(folder, picture)
    assert {".webp", ".bmp", ".tiff", ".gif", ".heic", ".jpg", ".png"} <= set(PHOTO_SUFFIXES)
    data = read_dataset("stanford_cars", str(tmp_path / "raw"))
    read = {os.path.basename(path) for path in data.table["image_path"]}
    assert set(names) <= read and "notes.txt" not in read and ".DS_Store" not in read
    reasons = dict(zip(data.rejected["image_id"].map(os.path.basename), data.rejected["reason"]))
    assert reasons["notes.txt"].startswith("not a photo (.txt)") and ".DS_Store" not in reasons
    out = tmp_path / "out"
    manifest = build_dataset(build_options(tmp_path / "raw", out, split="stratified", max_reject_fraction=0.5))
    stored = {os.path.basename(record["image/id"].decode()) for record in read_records(out, manifest)}
    assert set(names) <= stored
    assert manifest["rejected"]["count"] == 1 and "notes.txt" in (out / "rejected.csv").read_text()


def test_the_build_predict_and_the_form_accept_the_same_photos(tmp_path):
    from eval.images import image_files, load_image

    (tmp_path / "photos").mkdir()
    picture = Image.new("RGB", (64, 48), (200, 30, 30))
    names = save_formats(tmp_path / "photos", picture)
    found, problems = image_files([str(tmp_path / "photos")])  # eval.predict on a folder
    assert sorted(os.path.basename(path) for path in found) == sorted(names) and problems == []
    for path in found:  # what eval.predict and the listing form decode, by content
        shown = load_image(path, 32)
        assert shown.shape == (48, 64, 3) and np.abs(shown[20, 30] - (200, 30, 30)).max() < 40, path
    with pytest.raises(ValueError, match=r"not an image \(expected a photo"):
        load_image(str(tmp_path / "photos" / "notes.txt"), 32)


def sideways(picture, orientation=6):
    """JPEG bytes of ``picture`` stored as a camera held sideways stores it: the pixels turned, and the
    EXIF orientation saying how to turn them back."""
    stored = picture.transpose({6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270,
                                3: Image.Transpose.ROTATE_180}[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue(), stored.size


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_a_sideways_photo_is_stored_upright_with_its_box_turned_too(tmp_path, orientation):
    from eval.images import load_image

    upright = Image.new("RGB", (120, 80), (240, 240, 240))
    upright.paste((200, 30, 30), (20, 10, 60, 30))  # a red car in the upper left: x 20–59, y 10–29
    data, (width, height) = sideways(upright, orientation)
    path = tmp_path / "car.jpg"
    path.write_bytes(data)
    stored = np.asarray(Image.open(path).convert("RGB"))  # as the annotations see it: the stored grid
    rows, columns = np.nonzero((stored[..., 0] > 150) & (stored[..., 1] < 100))
    stored_box = (columns.min() + 1, rows.min() + 1, columns.max() + 1, rows.max() + 1)  # 1-based, inclusive
    assert stored.shape[:2] == (height, width) != (80, 120) or orientation == 3
    built = process(ImageTask(str(path), tuple(int(v) for v in stored_box)), ImageOptions())
    assert isinstance(built, Processed) and "turned upright" in built.converted
    pixels = np.asarray(Image.open(io.BytesIO(built.encoded)).convert("RGB"), dtype=float)
    assert pixels.shape == (80, 120, 3) and np.abs(pixels[15:25, 25:55] - (200, 30, 30)).max() < 30
    ymin, xmin, ymax, xmax = built.bbox
    assert (ymin, xmin, ymax, xmax) == pytest.approx((10 / 80, 20 / 120, 30 / 80, 60 / 120), abs=0.02)
    shown = load_image(str(path), 128).astype(float)  # eval.predict and the form turn it the same way
    assert shown.shape == pixels.shape and np.abs(shown - pixels).mean() < 3


def test_the_build_says_how_many_photos_it_turned(tmp_path, capsys):
    folder = class_folder_tree(tmp_path / "raw")
    for index, photo in enumerate(sorted(folder.glob("*.jpg"))[:2]):
        data, _ = sideways(Image.open(photo).convert("RGB"))
        photo.write_bytes(data)
    manifest = build_dataset(build_options(tmp_path / "raw", tmp_path / "out", split="stratified"))
    assert manifest["conversions"].get("turned upright") == 2
    assert "turned upright (EXIF orientation): 2" in capsys.readouterr().out


def test_a_file_name_that_is_not_utf8_is_listed_not_a_traceback(tmp_path, capsys):
    """os.listdir gives such a name with surrogates; writing it to rejected.csv ended in UnicodeEncodeError."""
    from eval.images import image_files

    folder = class_folder_tree(tmp_path / "raw")
    source = next(folder.glob("*.jpg"))
    misnamed = os.path.join(os.fsencode(folder), b"caf\xe9 photo.jpg")
    with open(misnamed, "wb") as handle:
        handle.write(source.read_bytes())
    out = tmp_path / "out"
    manifest = build_dataset(build_options(tmp_path / "raw", out, split="stratified", max_reject_fraction=0.5))
    rejected = (out / "rejected.csv").read_text(encoding="utf-8")
    assert manifest["rejected"]["count"] == 1
    assert "caf\\xe9 photo.jpg,read,its file name is not valid UTF-8" in rejected and "rename the file" in rejected
    assert "not valid UTF-8" in capsys.readouterr().out
    found, problems = image_files([str(folder), os.fsdecode(misnamed)])  # eval.predict: a folder and the file
    assert len(found) == len(list(folder.glob("*.jpg"))) - 1 and all(os.path.exists(path) for path in found)
    assert [problem.path.endswith("caf\\xe9 photo.jpg") for problem in problems] == [True, True]
    assert all("not valid UTF-8" in problem.reason for problem in problems)
