"""The synthetic generator: real file structures, honest bad files, learnable labels."""

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from data_prep.datasets import DATASETS, read_dataset
from data_prep.synthetic import SYNTHETIC, generate


def structure(path):
    """Variable names, shapes, struct fields and per-element kinds/shapes of a MAT file."""
    result = {}
    for key, value in loadmat(str(path)).items():
        if key.startswith("__"):
            continue
        first = value.reshape(-1)[0]
        if value.dtype.names:
            result[key] = (value.shape[0], value.dtype.names,
                           [(name, first[name].dtype.kind, first[name].shape) for name in value.dtype.names])
        else:
            result[key] = (value.shape[0], value.dtype.kind, first.dtype.kind, first.shape)
    return result


def test_mat_files_have_the_structure_of_the_real_ones(realdata, stanford_tree):
    root, _ = stanford_tree
    pairs = [("devkit/cars_meta.mat", "devkit/cars_meta.mat"),
             ("devkit/cars_train_annos.mat", "devkit/cars_train_annos.mat"),
             ("devkit/cars_test_annos.mat", "devkit/cars_test_annos.mat"),
             ("labeldata/cars_test_annos_withlabels.mat", "cars_test_annos_withlabels.mat")]
    for real, synthetic in pairs:
        assert structure(root / synthetic) == structure(realdata / real)
    kinds = {loadmat(str(root / "devkit" / "cars_train_annos.mat"))["annotations"][0][i]["bbox_x2"].dtype
             for i in range(10)}
    assert kinds <= {np.dtype("uint8"), np.dtype("uint16")}


def test_compcars_misc_files(compcars_tree):
    root, _ = compcars_tree
    names = loadmat(str(root / "data" / "misc" / "make_model_name.mat"))
    assert names["make_names"].shape[1] == 1 and names["make_names"][0][0][0] == "BWM"
    assert any(cell.size == 0 for cell in names["model_names"][:, 0])  # unused model ids are empty cells
    assert loadmat(str(root / "data" / "misc" / "car_type.mat"))["types"].shape == (1, 12)
    label = next((root / "data" / "label").rglob("*.txt")).read_text().splitlines()
    assert len(label) == 3 and label[1] == "1" and len(label[2].split()) == 4


def test_bad_files_are_what_they_claim(stanford_tree):
    root, truth = stanford_tree
    bad = {kind: root / path for kind, path in truth["bad_files"].items()}
    assert bad["zero_byte"].stat().st_size == 0 and not bad["missing"].exists()
    assert bad["png_named_jpg"].suffix == ".jpg" and Image.open(bad["png_named_jpg"]).format == "PNG"
    assert Image.open(bad["grayscale"]).mode == "L" and Image.open(bad["cmyk"]).mode == "CMYK"
    with pytest.raises(OSError):
        Image.open(bad["truncated"]).load()


def test_pictures_vary_in_size_and_boxes_fit(stanford_tree):
    root, truth = stanford_tree
    sizes = set()
    for path, (x1, y1, x2, y2) in truth["bbox_of"].items():
        if path in truth["bad_files"].values():
            continue
        width, height = Image.open(root / path).size
        sizes.add((width, height))
        assert 1 <= x1 < x2 <= width and 1 <= y1 < y2 <= height
    assert len(sizes) > 10


@pytest.mark.slow
def test_labels_are_learnable_from_small_thumbnails(tmp_path):
    """Make, type and model can be predicted far above chance from 24×16 thumbnails of the box."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    truth = generate("stanford_cars", str(tmp_path), "car_ims", makes=5, models_per_make=3, images_per_model=24,
                     seed=21, bad_files=False)
    features, makes, types, models = [], [], [], []
    for path, index in truth["class_of"].items():
        image = Image.open(tmp_path / path).convert("RGB")
        x1, y1, x2, y2 = truth["bbox_of"][path]
        crop = image.crop((x1 - 1, y1 - 1, x2, y2)).resize((24, 16))
        features.append(np.asarray(crop, dtype=np.float32).reshape(-1) / 255.0)
        car = truth["classes"][index]
        makes.append(car["make"]), types.append(str(car["type"])), models.append(car["name"])
    features = np.stack(features)
    for labels, floor in ((makes, 0.95), (types, 0.8), (models, 0.8)):
        train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.3, random_state=0,
                                                            stratify=labels)
        accuracy = LogisticRegression(max_iter=2000).fit(train_x, train_y).score(test_x, test_y)
        chance = 1 / len(set(labels))
        print(f"accuracy {accuracy:.2f} (floor {floor}, chance {chance:.2f})")
        assert accuracy >= floor and accuracy > 3 * chance, (floor, accuracy)


def test_fixed_size_for_benchmarks(tmp_path):
    truth = generate("stanford_cars", str(tmp_path), "devkit", makes=2, models_per_make=2, images_per_model=10,
                     seed=0, bad_files=False, size=(800, 600))
    copies = {copy for _, copy in truth["near_duplicates"]}
    assert copies
    for path in truth["class_of"]:
        width, height = Image.open(tmp_path / path).size
        if path in copies:  # re-posted copies are rescaled by a few percent
            assert 0.8 < width / 800 < 1.15 and abs(width / height - 4 / 3) < 0.02
        else:
            assert (width, height) == (800, 600)


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_dataset_reads_its_synthetic_twin_in_every_variant(dataset, tmp_path):
    """Each registered dataset has a synthetic twin (same name) in every layout variant, and reads back
    with its heads and every listed image but the one deliberately missing."""
    assert set(SYNTHETIC.names()) == set(DATASETS.names())
    for variant in SYNTHETIC.get(dataset).variants:
        root = tmp_path / variant.replace("/", "_")
        truth = generate(dataset, str(root), variant, makes=2, models_per_make=2, images_per_model=3, seed=9)
        data = read_dataset(dataset, str(root))
        assert data.heads == DATASETS.get(dataset).heads and data.dataset == dataset
        assert len(data.table) + len(data.rejected) >= truth["images"] - 1, variant
        assert "missing file" in " ".join(data.rejected["reason"]), variant
