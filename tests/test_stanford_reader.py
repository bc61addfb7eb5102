"""Stanford Cars reader: every layout on synthetic trees, and the real annotation files."""
import os
import re
import shutil

import pytest

from common.errors import UserError
from data_prep.datasets import read_dataset
from data_prep.synthetic import generate

EXPECTED_LAYOUT = {"devkit": "devkit", "devkit_nested": "devkit", "torchvision": "torchvision",
                   "car_ims": "car_ims", "kaggle": "kaggle"}


def check_against_truth(data, truth):
    """Every listed image except the missing one is a row, with the right labels and box."""
    missing = truth["bad_files"].get("missing")
    assert len(data.table) == truth["images"] - 1
    assert list(data.rejected["image_id"]) == [missing]
    assert data.rejected["reason"].iloc[0].startswith("missing file")
    names = [c["name"] for c in truth["classes"]]
    for row in data.table.itertuples():
        car = truth["classes"][truth["class_of"][row.image_path]]
        assert row.model == car["name"] and row.make == car["make"] and row.model_name == car["model"]
        assert row.type == car["type"] and row.year == car["year"]
        assert names[row.class_id - 1] == car["name"]
        assert [row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2] == truth["bbox_of"][row.image_path]
    assert all(str(data.table[column].dtype) == "Int64" for column in ("bbox_x1", "bbox_x2", "class_id"))
    assert set(data.table["source_split"]) == {"train", "test"}


@pytest.mark.parametrize("variant", sorted(EXPECTED_LAYOUT))
def test_every_layout_is_detected_and_read(tmp_path, variant):
    truth = generate("stanford_cars", str(tmp_path), variant, makes=3, models_per_make=2, images_per_model=6, seed=3)
    data = read_dataset("stanford_cars", str(tmp_path))
    assert data.layout == EXPECTED_LAYOUT[variant]
    check_against_truth(data, truth)
    assert "Ram C/V Cargo Van Minivan" in " ".join(data.table["model"])  # slash restored from C-V folder


@pytest.mark.parametrize("header, crlf", [(True, False), (False, True), (True, True)])
def test_kaggle_csvs_with_header_and_crlf(tmp_path, header, crlf):
    truth = generate("stanford_cars", str(tmp_path), "kaggle", makes=3, models_per_make=2, images_per_model=5,
                     seed=4, csv_header=header, crlf=crlf)
    raw = (tmp_path / "anno_train.csv").read_bytes()
    assert (b"\r\n" in raw) == crlf and raw.startswith(b"image_name") == header
    check_against_truth(read_dataset("stanford_cars", str(tmp_path), layout="kaggle"), truth)


def test_class_folders_without_csvs_use_folder_names_and_unknown_boxes(tmp_path):
    generate("stanford_cars", str(tmp_path), "kaggle", makes=2, models_per_make=2, images_per_model=4, seed=5,
             bad_files=False)
    for name in ("anno_train.csv", "anno_test.csv", "names.csv"):
        os.remove(tmp_path / name)
    data = read_dataset("stanford_cars", str(tmp_path))
    assert data.notes == {"bbox": "unknown", "class_names": "class folder names"}
    assert data.table["bbox_x1"].isna().all() and len(data.table) > 0
    assert data.table["make"].notna().all()


def test_official_folder_names_map_back_to_official_ids(tmp_path, stanford_tree):
    """Without names.csv, folders named like the real classes get the official ids and names."""
    sample = next((stanford_tree[0] / "cars_train").iterdir())
    for split, folder in (("train", "Ram C-V Cargo Van Minivan 2012"), ("test", "AM General Hummer SUV 2000")):
        (tmp_path / "car_data" / "car_data" / split / folder).mkdir(parents=True)
        shutil.copy(sample, tmp_path / "car_data" / "car_data" / split / folder / "000001.jpg")
    data = read_dataset("stanford_cars", str(tmp_path))
    rows = {row.model: row.class_id for row in data.table.itertuples()}
    assert rows == {"Ram C/V Cargo Van Minivan 2012": 174, "AM General Hummer SUV 2000": 1}


def test_unknown_layout_lists_what_was_looked_for_and_found(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError) as error:
        read_dataset("stanford_cars", str(tmp_path))
    message = str(error.value)
    for expected in ("devkit/cars_meta.mat", "cars_annos.mat", "car_data/car_data", "photos/", "notes.txt"):
        assert expected in message


def test_forced_layout_that_is_absent_or_unknown(stanford_tree):
    root, _ = stanford_tree
    with pytest.raises(UserError, match="no stanford_cars layout found"):
        read_dataset("stanford_cars", str(root), layout="car_ims")
    with pytest.raises(UserError, match="did you mean 'kaggle'"):
        read_dataset("stanford_cars", str(root), layout="kagle")


def test_missing_test_labels_say_which_file_to_add(tmp_path):
    generate("stanford_cars", str(tmp_path), "devkit", makes=2, models_per_make=1, images_per_model=4, seed=6)
    os.remove(tmp_path / "cars_test_annos_withlabels.mat")
    with pytest.raises(UserError, match="cars_test_annos_withlabels.mat"):
        read_dataset("stanford_cars", str(tmp_path))


def test_class_ids_out_of_range_are_rejected(tmp_path):
    from data_prep.matfile import load_mat
    from data_prep.synthetic.matwrite import matlab_int, save_mat

    generate("stanford_cars", str(tmp_path), "devkit", makes=2, models_per_make=1, images_per_model=4, seed=7,
             bad_files=False)
    path = str(tmp_path / "devkit" / "cars_train_annos.mat")
    annotations = load_mat(path)["annotations"]
    annotations[0, 0]["class"] = matlab_int(250)
    save_mat(path, {"annotations": annotations})
    data = read_dataset("stanford_cars", str(tmp_path))
    assert list(data.rejected["reason"]) == ["label out of range: class 250 not in 1..2"]


def kaggle_tree(tmp_path):
    generate("stanford_cars", str(tmp_path), "kaggle", makes=2, models_per_make=1, images_per_model=4, seed=7,
             bad_files=False)
    return (tmp_path / "anno_train.csv").read_text().splitlines()


def test_an_image_listed_twice_is_kept_once_or_rejected_when_the_rows_differ(tmp_path):
    """A CSV listing a row twice ended in 'AssertionError: reader produced duplicate image ids'."""
    rows = kaggle_tree(tmp_path)
    first, second = rows[0].split(","), rows[1].split(",")
    conflicting = ",".join(second[:3] + [str(int(second[3]) - 5)] + second[4:])  # the same file, another box
    (tmp_path / "anno_train.csv").write_text("\n".join(rows + [rows[0], conflicting]) + "\n")
    data = read_dataset("stanford_cars", str(tmp_path))
    assert data.table["image_id"].is_unique
    train = data.table["image_id"][data.table["source_split"] == "train"]
    assert sum(train.str.endswith("/" + first[0])) == 1  # word for word twice: kept once
    reasons = dict(zip(data.rejected["image_id"].map(os.path.basename), data.rejected["reason"]))
    assert reasons[second[0]] == "listed 2 times in the annotations with different labels or boxes"


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [rows[0].rsplit(",", 1)[0] + ",three"] + rows[1:],
     "anno_train.csv, data row 1: expected 'fname,x1,y1,x2,y2,class' with integers, got"),  # was taken for a header
    (lambda rows: [row.encode("latin-1") for row in ["Citro\xebn C4 Sedan 2012"]],
     "names.csv is not UTF-8 text (byte 6 is 0xeb; saved as Latin-1 or Windows-1252?): save it as UTF-8"),
])
def test_annotation_files_that_cannot_be_read_are_one_line(tmp_path, edit, message):
    rows = kaggle_tree(tmp_path)
    edited = edit(rows)
    if isinstance(edited[0], bytes):
        (tmp_path / "names.csv").write_bytes(b"\n".join(edited) + b"\n")
    else:
        (tmp_path / "anno_train.csv").write_text("\n".join(edited) + "\n")
    with pytest.raises(UserError, match=re.escape(message)):
        read_dataset("stanford_cars", str(tmp_path))


# --- real annotation files ---------------------------------------------------------------------

def real_devkit_tree(realdata, tmp_path):
    """The real .mat files with every listed image present (links to one small JPEG)."""
    from PIL import Image

    (tmp_path / "devkit").mkdir()
    for name in ("cars_meta.mat", "cars_train_annos.mat", "cars_test_annos.mat"):
        shutil.copy(realdata / "devkit" / name, tmp_path / "devkit" / name)
    shutil.copy(realdata / "labeldata" / "cars_test_annos_withlabels.mat", tmp_path)
    picture = tmp_path / "one.jpg"
    Image.new("RGB", (8, 8)).save(picture)
    for split, count in (("train", 8144), ("test", 8041)):
        folder = tmp_path / f"cars_{split}"
        folder.mkdir()
        for number in range(1, count + 1):
            os.symlink(picture, folder / f"{number:05d}.jpg")
    return tmp_path


def test_real_devkit_annotations(realdata, tmp_path):
    data = read_dataset("stanford_cars", str(real_devkit_tree(realdata, tmp_path)))
    table = data.table
    assert data.layout == "devkit" and data.rejected.empty
    assert (table["source_split"] == "train").sum() == 8144 and (table["source_split"] == "test").sum() == 8041
    assert table["model"].nunique() == 196 and table["make"].nunique() == 49
    assert {"AM General", "Aston Martin", "Land Rover"} <= set(table["make"])
    first = table.iloc[0]
    assert (first.image_path, first.bbox_x1, first.bbox_y1, first.bbox_x2, first.bbox_y2, first.class_id) == \
        ("cars_train/00001.jpg", 39, 116, 569, 375, 14)
    assert first.bbox_x2 - first.bbox_x1 == 530  # 64-bit ints: uint8 arithmetic would wrap to 18
    assert str(table["bbox_x1"].dtype) == "Int64"
    assert table["bbox_x2"].max() == 7224 and table["bbox_x1"].min() == 1


def test_real_kaggle_csvs_equal_the_devkit(realdata, tmp_path):
    from data_prep.matfile import load_mat, struct_records
    from data_prep.datasets.stanford_cars.kaggle import read_annotation_csv, read_names_csv

    for split, mat in (("train", realdata / "devkit" / "cars_train_annos.mat"),
                       ("test", realdata / "labeldata" / "cars_test_annos_withlabels.mat")):
        from_csv = read_annotation_csv(str(realdata / "kaggle" / f"anno_{split}.csv"))
        from_mat = struct_records(load_mat(str(mat)), "annotations", str(mat))
        assert len(from_csv) == {"train": 8144, "test": 8041}[split]
        assert from_csv == [{key: record[key] for key in ("fname", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2",
                                                             "class")} for record in from_mat]
    names = read_names_csv(str(realdata / "kaggle" / "names.csv"))
    assert len(names) == 196 and names[173] == "Ram C/V Cargo Van Minivan 2012"
    # a re-upload with a header row and CRLF endings reads the same
    text = (realdata / "kaggle" / "anno_test.csv").read_text().splitlines()
    copy = tmp_path / "anno_test.csv"
    copy.write_bytes(("image,value1,value2,value3,value4,label\r\n" + "\r\n".join(text) + "\r\n").encode())
    assert read_annotation_csv(str(copy)) == read_annotation_csv(str(realdata / "kaggle" / "anno_test.csv"))
    header_names = tmp_path / "names.csv"
    header_names.write_text("class_id,class_name\r\n" + "".join(f"{i},{n}\r\n" for i, n in enumerate(names, 1)))
    assert read_names_csv(str(header_names)) == names


def test_class_folder_images_missing_from_the_annotation_csv_are_reported(tmp_path, capsys):
    """An image in a class folder that anno_train.csv does not list is not dropped silently: it is a
    rejection with its reason, in rejected.csv and the build's summary."""
    from data_prep.build import build_dataset
    from tests.helpers import build_options

    generate("stanford_cars", str(tmp_path / "raw"), "kaggle", makes=2, models_per_make=2, images_per_model=6,
             seed=6, bad_files=False)
    folder = next(p for p in sorted((tmp_path / "raw" / "car_data" / "car_data" / "train").iterdir()) if p.is_dir())
    shutil.copy(next(folder.iterdir()), folder / "extra_photo.jpg")
    unlisted = f"car_data/car_data/train/{folder.name}/extra_photo.jpg"
    data = read_dataset("stanford_cars", str(tmp_path / "raw"))
    assert unlisted not in set(data.table["image_id"])
    reasons = dict(zip(data.rejected["image_id"], data.rejected["reason"]))
    assert reasons[unlisted].startswith("not in anno_train.csv")
    build_dataset(build_options(tmp_path / "raw", tmp_path / "out", max_reject_fraction=0.5))
    rejected = (tmp_path / "out" / "rejected.csv").read_text()
    assert unlisted in rejected and "not in anno_train.csv" in rejected
    assert "not in anno_train.csv 1" in capsys.readouterr().out
