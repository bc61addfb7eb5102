"""CompCars (web-nature) reader on synthetic trees: bases, names, years, types, viewpoints, splits."""
import pytest

from common.errors import UserError
from data_prep.datasets.compcars.reader import MAKE_NAME_CORRECTIONS, make_labels, parse_label, parse_year
from data_prep.datasets import read_dataset
from data_prep.readers import ReadOptions
from data_prep.synthetic import generate


@pytest.mark.parametrize("variant", ["root", "data", "data/data"])
def test_every_base_folder_is_found(tmp_path, variant):
    truth = generate("compcars", str(tmp_path), variant, makes=3, models_per_make=2, images_per_model=5, seed=8)
    data = read_dataset("compcars", str(tmp_path))
    expected_base = tmp_path if variant == "root" else tmp_path.joinpath(*variant.split("/"))
    assert data.layout == "web_nature" and data.base == str(expected_base)
    assert len(data.table) == truth["images"] - 1  # the missing one is rejected
    assert list(data.rejected["image_id"]) == [truth["bad_files"]["missing"]]
    for row in data.table.itertuples():
        assert [row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2] == truth["bbox_of"][row.image_path]
        car = truth["classes"][truth["class_of"][row.image_path]]
        assert row.model_name == car["model"]


def test_make_names_are_stripped_and_cleaned(compcars_tree):
    root, truth = compcars_tree
    data = read_dataset("compcars", str(root))
    makes = set(data.table["make"])
    assert makes == {"BMW", "Hyundai", "Audi", "Lotus", "Chevrolet", "Mercedes-Benz", "Volvo"}
    assert data.notes["make_name_corrections"] == {"BWM": "BMW", "Chevy": "Chevrolet", "Benz": "Mercedes-Benz"}
    assert set(data.table["model"]) >= {"BMW A10", "Hyundai E21"}  # "make model", cleaned make


def test_no_clean_names_keeps_every_make_id_distinct(compcars_tree):
    root, _ = compcars_tree
    data = read_dataset("compcars", str(root), options=ReadOptions(clean_names=False))
    assert set(data.table["make"]) == {"BWM", "Hyundai", "Audi", "Lotus [4]", "Chevy", "Benz", "Volvo", "Lotus [8]"}
    assert data.notes["make_name_corrections"] == {}


def test_years_types_viewpoints_and_official_split(compcars_tree):
    root, truth = compcars_tree
    data = read_dataset("compcars", str(root))
    table = data.table
    folders = table["image_path"].str.split("/").str[3]
    assert table.loc[folders.isin(["unknown", "5008"]), "year"].isna().all()
    assert (folders.isin(["unknown", "5008"])).sum() > 0
    assert table.loc[~folders.isin(["unknown", "5008"]), "year"].notna().all()
    last_model = table["class_id"].max()  # the generator gives the last model type 0 (unknown)
    assert table.loc[table["class_id"] == last_model, "type"].isna().all()
    assert table.loc[table["class_id"] != last_model, "type"].notna().all()
    assert set(table["viewpoint"]) == {-1, 1, 2, 3, 4, 5}
    listed = table["source_split"].notna()
    assert listed.any() and (~listed).any() and set(table.loc[listed, "source_split"]) == {"train", "test"}
    assert set(table["class_id"]) == {1 + 3 * i + i % 2 for i in range(16)}  # sparse model ids


def test_bad_label_files_and_ids_out_of_range_are_rejected(tmp_path):
    generate("compcars", str(tmp_path), "root", makes=2, models_per_make=1, images_per_model=4, seed=9,
             bad_files=False)
    labels = sorted((tmp_path / "label").rglob("*.txt"))
    labels[0].write_text("1\n1\n10 20 30\n")
    labels[1].unlink()
    stray = tmp_path / "image" / "99" / "1" / "2012"
    stray.mkdir(parents=True)
    (stray / "abc.jpg").write_bytes(b"x")
    data = read_dataset("compcars", str(tmp_path))
    reasons = sorted(data.rejected["reason"].str.split(":").str[0])
    assert reasons == ["bad label file", "label out of range", "missing label file"]


def test_layout_errors_name_the_expected_folders(tmp_path):
    (tmp_path / "image").mkdir()
    with pytest.raises(UserError, match="image/, label/ and misc/"):
        read_dataset("compcars", str(tmp_path))


def test_label_year_and_name_helpers():
    assert parse_label("4\n1\n280 293 536 472\n") == (4, (280, 293, 536, 472))
    assert parse_label("-1\n1\n1 2 3 4") == (-1, (1, 2, 3, 4))
    assert parse_label("9\n1\n1 2 3 4") == (-1, (1, 2, 3, 4))  # not a documented code: unknown
    with pytest.raises(ValueError):
        parse_label("1\n1\n")
    assert [parse_year(y) for y in ("2011", "unknown", "5008", "1926")] == ["2011", None, None, "1926"]
    assert make_labels(["Lotus", "Lotus", "BWM "[:-1]], clean=False) == {1: "Lotus [1]", 2: "Lotus [2]", 3: "BWM"}
    assert make_labels(["Lotus", "Lotus", "BWM"], clean=True) == {1: "Lotus", 2: "Lotus", 3: "BMW"}
    assert set(MAKE_NAME_CORRECTIONS.values()) >= {"BMW", "Buick", "Chery", "Lamborghini", "Saab"}
