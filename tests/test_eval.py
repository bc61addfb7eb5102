"""eval.test end to end on a tiny trained model: metrics equal an independent computation over the
same records, every output file is well formed, every model format loads, bad inputs are refused."""
import csv
import json
import shutil

import numpy as np
import pytest

import keras
import tensorflow as tf

from common.cli import run_main
from common.errors import UserError
from data_prep.manifest import head_names
from tests.helpers import read_records

from tests.helpers import EVAL_SIZE as SIZE


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    from eval.test import evaluate

    out = tmp_path_factory.mktemp("eval_out") / "report"
    return evaluate(str(trained / "model.keras"), out=str(out)), out


def independent_probs(model_path, shards, manifest, split="test"):
    """Decode each record with tf.io directly, resize to the model's size and round to whole pixel
    values (the pipeline's documented 8-bit images), run the Keras model."""
    model = keras.models.load_model(model_path, compile=False)
    records = read_records(shards, manifest, split)
    images = np.stack([np.round(tf.image.resize(tf.io.decode_jpeg(r["image/encoded"], channels=3), [SIZE, SIZE]))
                       for r in records])
    outputs = model.predict(images, verbose=0)
    labels = {head: np.array([r[f"label/{head}"] for r in records]) for head in manifest["heads"]}
    ids = [r["image/id"].decode() for r in records]
    return outputs, labels, ids


def test_accuracy_equals_an_independent_computation(trained, evaluated, tiny_shards):
    from sklearn.metrics import f1_score, top_k_accuracy_score

    metrics, out = evaluated
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    probs, labels, ids = independent_probs(trained / "model.keras", tiny_shards, manifest)
    rows = {row["id"]: row for row in csv.DictReader(open(out / "predictions.csv"))}
    assert sorted(rows) == sorted(ids) and metrics["examples"] == len(ids)
    for head, entry in metrics["heads"].items():
        known = labels[head] >= 0
        predicted = probs[head].argmax(axis=1)
        names = head_names(manifest, head)
        assert [rows[i][f"{head}_predicted"] for i in ids] == [names[p] for p in predicted]
        assert entry["examples"] == known.sum()
        assert entry["accuracy"] == pytest.approx(np.mean(predicted[known] == labels[head][known]), abs=1e-9)
        assert entry["weighted"]["f1"] == pytest.approx(
            f1_score(labels[head][known], predicted[known], average="weighted",
                     labels=range(len(names)), zero_division=0), abs=1e-9)
        nll = -np.log(np.clip(probs[head][known, labels[head][known]], 1e-7, 1))
        assert entry["loss"] == pytest.approx(nll.mean(), rel=1e-4)
        if len(names) > 5:
            assert entry["top5"] == pytest.approx(top_k_accuracy_score(
                labels[head][known], probs[head][known], k=5, labels=range(len(names))), abs=1e-9)
        else:
            assert entry["top5"] is None


def test_every_output_file_is_well_formed(evaluated, tiny_shards):
    from PIL import Image

    metrics, out = evaluated
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    written = json.loads((out / "metrics.json").read_text())
    assert written["heads"].keys() == manifest["heads"].keys() and written["split"] == "test"
    assert set(written["hierarchy"]) == {"make", "type", "year"}  # Stanford: the model fixes all three
    report = (out / "report.md").read_text()
    for head, entry in manifest["heads"].items():
        table = list(csv.DictReader(open(out / f"per_class_{head}.csv")))
        assert [row["name"] for row in table] == head_names(manifest, head)
        assert sum(int(row["support"]) for row in table) == written["heads"][head]["examples"]
        for figure in (f"confusion_{head}.png", f"reliability_{head}.png"):
            assert f"figures/{figure}" in report
            with Image.open(out / "figures" / figure) as image:
                assert image.format == "PNG" and min(image.size) > 100
        calibration = written["heads"][head]["calibration"]
        assert sum(b["count"] for b in calibration["bins"]) == written["heads"][head]["examples"]
        assert 0 <= calibration["ece"] <= 1
    assert "## Hierarchy" in report and "| head |" in report


@pytest.mark.slow
def test_keras_h5_savedmodel_and_tflite_predict_alike(trained, tmp_path, capsys):
    """Every model format (and every export format) predicts what the .keras model predicts."""
    from common.trust import load_trust
    from eval.export import EXPORTS, export
    from eval.loading import MODEL_FORMATS, load_predictor
    from eval.trust import trusted_predict

    assert set(MODEL_FORMATS.names()) == {".keras", ".h5", "savedmodel", ".tflite"}  # all loaded below
    assert set(EXPORTS.names()) == {"savedmodel", "tflite"}  # all written below
    saved = export(str(trained / "model.keras"), "savedmodel", str(tmp_path / "sm"))
    lite = export(str(trained / "model.keras"), "tflite", str(tmp_path / "model.tflite"))
    quantized = export(str(trained / "model.keras"), "tflite", str(tmp_path / "q.tflite"), quantize=True)
    assert saved["check"]["max_abs_difference"] < 1e-5 and lite["check"]["max_abs_difference"] < 1e-4
    assert quantized["bytes"] < lite["bytes"] / 2  # int8 weights
    images = np.random.default_rng(1).integers(0, 256, (3, 90, 120, 3), dtype=np.uint8)  # not the model's size
    keras_model = load_predictor(str(trained / "model.keras"))
    trust = load_trust(str(trained / "model.keras"))  # set at the end of training: the exports apply it inside
    assert saved["trust"] and lite["trust"] and 0 <= saved["check"]["max_score_difference"] < 1e-5
    reference = keras_model.predict(images)
    calibrated = trusted_predict(keras_model, trust)(images)
    assert set(calibrated) == set(reference) | {"ood_score"}
    assert not np.allclose(calibrated["make"], reference["make"], atol=1e-3)  # the temperatures change them
    for path, tolerance, expected in ((trained / "focal_loss.h5", 1e-5, reference), (tmp_path / "sm", 1e-5, calibrated),
                                      (tmp_path / "model.tflite", 1e-4, calibrated)):
        predictor = load_predictor(str(path))
        assert predictor.heads == {"make": 4, "model": 8, "year": len(reference["year"][0]),
                                   "type": len(reference["type"][0])}
        outputs = trusted_predict(predictor, predictor.trust)(images)
        assert set(outputs) == set(expected)
        for head in expected:
            np.testing.assert_allclose(outputs[head], expected[head], atol=tolerance, err_msg=f"{path} {head}")
        assert set(predictor.predict(images)) == set(reference)  # predict: the heads only
    err = capsys.readouterr().err  # a SavedModel's graph runs when loaded: said each time, once
    assert err.count(f"note: {tmp_path / 'sm'} is a SavedModel: its own graph runs here") == 1
    assert err.count("its own graph runs here") == 1  # the .keras, .h5 and .tflite files: no note
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["image_size"] == SIZE and len(info["classes"]["model"]) == 8 and info["input"] == "images"
    assert info["trust"]["threshold"] == pytest.approx(trust.threshold) and "ood_score" in info["outputs"]
    assert info["trust"]["temperatures"] == pytest.approx(trust.temperatures)
    assert (tmp_path / "sm" / "manifest.json").is_file() and (tmp_path / "sm" / "assets" / "model_info.json").is_file()


def test_exported_savedmodel_evaluates_like_the_keras_model(trained, evaluated, tmp_path, tiny_shards):
    from eval.export import export
    from eval.test import evaluate

    bare = tmp_path / "bare"  # without its calibration beside it: the export's probabilities are the model's own
    bare.mkdir()
    shutil.copy(trained / "model.keras", bare / "model.keras")
    assert export(str(bare / "model.keras"), "savedmodel", str(tmp_path / "sm"), check=False)["trust"] is False
    metrics = evaluate(str(tmp_path / "sm"), data=str(tiny_shards), out=str(tmp_path / "report"))
    for head, entry in evaluated[0]["heads"].items():
        assert metrics["heads"][head]["accuracy"] == entry["accuracy"]
        assert metrics["heads"][head]["loss"] == pytest.approx(entry["loss"], rel=1e-5)


def test_tta_averages_the_mirrored_prediction():
    from eval.run_data import with_tta

    def predict(images):  # "probability" = mean of the left half of each image
        left = images[:, :, : images.shape[2] // 2].mean(axis=(1, 2, 3)) / 255
        return {"h": np.stack([left, 1 - left], axis=1)}

    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[0, :, :2] = 255  # left half white: 1.0 plain, 0.0 mirrored
    result = with_tta(predict)(images)["h"]
    np.testing.assert_allclose(result[:, 0], [0.5, 0.0])


def test_tta_option_runs_and_names_the_report(trained, tmp_path):
    from eval.test import evaluate

    metrics = evaluate(str(trained / "model.keras"), out=str(tmp_path / "tta"), tta=True)
    assert metrics["tta"] is True and "TTA" in metrics["title"] and (tmp_path / "tta" / "report.md").is_file()


def run_cli(module, argv, capsys):
    code = run_main(module.main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bad_model_paths_give_one_clear_line(trained, tmp_path, capsys):
    from eval import test as eval_test

    (tmp_path / "broken.keras").write_bytes(b"not a zip file")
    whole = (trained / "model.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(whole[:len(whole) // 2])  # a copy cut short
    legacy = (trained / "focal_loss.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(legacy[:len(legacy) // 2])
    (tmp_path / "folder").mkdir()
    (tmp_path / "weights.pt").write_bytes(b"x")
    cases = {str(tmp_path / "missing.keras"): "does not exist",
             str(tmp_path / "broken.keras"): "is damaged or incomplete (not a .keras zip archive)",
             str(tmp_path / "truncated.keras"): "is damaged or incomplete (not a .keras zip archive)",
             str(tmp_path / "truncated.h5"): "is damaged or incomplete",
             str(tmp_path / "folder"): "not a SavedModel", str(tmp_path / "weights.pt"): "--model: unknown model format '.pt'; choose one of: .h5, .keras, .tflite, savedmodel"}
    for path, expected in cases.items():
        code, _, err = run_cli(eval_test, ["--model", path], capsys)
        assert code == 2 and expected in err and "Traceback" not in err and "File not found" not in err, (path, err)


def test_missing_manifest_missing_shards_and_empty_split(trained, tmp_path, capsys):
    from eval import test as eval_test

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(trained / "model.keras", alone)
    code, _, err = run_cli(eval_test, ["--model", str(alone / "model.keras")], capsys)
    assert code == 2 and "no manifest.json next to the model" in err and "--data" in err

    moved = tmp_path / "moved"  # a run whose shards are not where its config says
    shutil.copytree(trained, moved, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (moved / "config.yaml").write_text((moved / "config.yaml").read_text().replace("tiny_shards", "gone_shards"))
    code, _, err = run_cli(eval_test, ["--model", str(moved / "model.keras")], capsys)
    assert code == 2 and "cannot be found" in err and "gone_shards" in err

    code, _, err = run_cli(eval_test, ["--model", str(trained / "model.keras"), "--split", "holdout"], capsys)
    assert code == 2 and "no 'holdout' examples" in err and "test" in err


def test_data_with_other_classes_is_refused(trained, tiny_shards, tmp_path):
    from eval.datasource import find_data

    other = tmp_path / "other"
    shutil.copytree(tiny_shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    names = manifest["heads"]["model"]["names"]
    manifest["heads"]["model"]["names"] = {key: names[str(len(names) - 1 - int(key))] for key in names}
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="model class lists differ"):
        find_data(str(trained / "model.keras"), str(other))
    assert find_data(str(trained / "model.keras"), str(tiny_shards)).shards == str(tiny_shards)
    source = find_data(str(trained / "model.keras"))  # the run's config names the shards
    assert source.shards == str(tiny_shards)


def test_heads_that_do_not_match_are_named():
    from eval.datasource import check_heads

    manifest = {"heads": {"make": {"num_classes": 4}, "model": {"num_classes": 8}}}
    assert check_heads({"model": 8}, manifest) == ["model"]
    with pytest.raises(UserError, match=r"the model has model \(196 classes\); the manifest has make \(4 classes\)"):
        check_heads({"model": 196}, manifest)


@pytest.mark.parametrize("command, split, how", [("test", "test", "corrupt"), ("test", "test", "missing"),
                                                 ("retrieval", "train", "corrupt")])
def test_damaged_shards_in_evaluation_give_one_line(trained, tiny_shards, tmp_path, capsys, command, split, how):
    import importlib

    from tests.helpers import damaged_copy

    shards, name = damaged_copy(tiny_shards, tmp_path / "shards", split, how)
    main = importlib.import_module(f"eval.{command}").main
    assert run_main(main, ["--model", str(trained / "model.keras"), "--data", str(shards),
                           "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert name in err and "data_prep.verify" in err and "Traceback" not in err and err.count("\n") == 1, err
