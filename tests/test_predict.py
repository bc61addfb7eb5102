"""eval.predict end to end on the tiny trained model: photos read, top-k, bad files, broken models."""
import csv
import io
import json

import numpy as np
import pytest

import keras

from common.cli import run_main
from data_prep.manifest import head_names
from tests.helpers import EVAL_SIZE, manifest_of, read_records






@pytest.fixture(scope="module")
def photos(tiny_shards, tmp_path_factory):
    """Three test images as files (one rotated by EXIF, one PNG), a text file named .jpg, a nested folder."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    records = read_records(tiny_shards, manifest_of(tiny_shards), "test")[:3]
    (folder / "a.jpg").write_bytes(records[0]["image/encoded"])
    image = Image.open(io.BytesIO(records[1]["image/encoded"]))
    (folder / "sub").mkdir()
    image.save(folder / "sub" / "b.png")
    rotated = image.transpose(Image.Transpose.ROTATE_270)  # stored sideways, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "c.jpg", exif=exif.tobytes(), quality=100)
    (folder / "notes.jpg").write_text("not a picture")
    return folder, records


def test_images_are_found_read_upright_and_bad_ones_explained(photos):
    from eval.images import image_files, load_image

    folder, records = photos
    files, problems = image_files([str(folder), str(folder / "missing.jpg")])
    assert [f.split("/")[-1] for f in files] == ["a.jpg", "c.jpg", "notes.jpg", "b.png"]
    assert [p.reason for p in problems] == ["no such file or folder"]
    upright = load_image(str(folder / "sub" / "b.png"), EVAL_SIZE)
    assert load_image(str(folder / "c.jpg"), EVAL_SIZE).shape == upright.shape  # EXIF orientation applied
    with pytest.raises(ValueError, match="not an image"):
        load_image(str(folder / "notes.jpg"), EVAL_SIZE)


def test_predict_reports_top_k_implied_make_and_skips_unreadable_files(trained, photos, tiny_shards, capsys):
    from common.trust import load_trust
    from eval import predict
    from eval.loading import load_predictor

    folder, records = photos
    code = run_main(predict.main, ["--model", str(trained / "model.keras"), str(folder), "--top-k", "2",
                                   "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1  # something was skipped
    result = json.loads(captured.out)
    assert [row["file"].split("/")[-1] for row in result["predictions"]] == ["a.jpg", "c.jpg", "b.png"]
    assert [e["file"].split("/")[-1] for e in result["errors"]] == ["notes.jpg"]
    assert "skipped" in captured.err and "notes.jpg: not an image" in captured.err
    manifest = manifest_of(tiny_shards)
    first = result["predictions"][0]
    assert all(len(first[head]) == 2 for head in manifest["heads"])
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(records[0]["image/encoded"])).convert("RGB"))  # as eval.images reads
    probs = load_predictor(str(trained / "model.keras")).predict(pixels[None])
    probs = load_trust(str(trained / "model.keras")).calibrated(probs)  # set at the end of training
    for head in manifest["heads"]:
        order = np.argsort(-probs[head][0])
        assert [c["class"] for c in first[head]] == [head_names(manifest, head)[i] for i in order[:2]]
        assert first[head][0]["probability"] == pytest.approx(float(probs[head][0][order[0]]), abs=1e-6)
    mapping = manifest["hierarchy"]["model"]["make"]
    totals = np.bincount(mapping, weights=probs["model"][0], minlength=4)
    assert first["make_from_model"] == {"class": head_names(manifest, "make")[int(totals.argmax())],
                                        "probability": pytest.approx(float(totals.max()), abs=1e-6)}


def test_predict_table_csv_and_nothing_readable(trained, photos, capsys):
    from eval import predict

    folder, _ = photos
    model = str(trained / "model.keras")
    assert run_main(predict.main, ["--model", model, str(folder / "a.jpg"), "--format", "csv", "--top-k", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and {"make_1", "make_1_probability", "model_1", "make_from_model"} <= set(rows[0])
    assert run_main(predict.main, ["--model", model, str(folder / "a.jpg")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("model trained on stanford_cars (synthetic demo pictures — not real cars")
    assert table.splitlines()[1].endswith("a.jpg") and "make_from_model" in table
    assert run_main(predict.main, ["--model", model, str(folder / "notes.jpg")]) == 2
    assert "no image could be predicted" in capsys.readouterr().err
    assert run_main(predict.main, ["--model", model, str(folder), "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err




def test_a_model_with_nan_weights_is_refused_by_predict_and_test(trained, photos, tmp_path, capsys):
    import shutil

    from eval import predict, test

    run = tmp_path / "broken_run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("eval_*", "export"))
    model = keras.models.load_model(run / "model.keras")
    kernel = model.get_layer("model")
    kernel.set_weights([np.full_like(w, np.nan) for w in kernel.get_weights()])
    model.save(run / "model.keras")
    folder, _ = photos
    for main, argv in ((predict.main, ["--model", str(run / "model.keras"), str(folder / "a.jpg")]),
                       (test.main, ["--model", str(run / "model.keras")])):
        assert run_main(main, argv) == 2
        err = capsys.readouterr().err
        assert "not numbers" in err and "model" in err and "Traceback" not in err, err




@pytest.mark.parametrize("command", ["eval.test", "eval.predict", "eval.app"])
def test_every_model_option_says_a_savedmodel_is_a_program(command, capsys):
    import importlib

    with pytest.raises(SystemExit):
        importlib.import_module(command).main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "A SavedModel is a program: loading it runs the graph it holds" in shown and "safe mode" in shown
