"""Retrieval, prediction and export end to end on the tiny trained model, and their bad inputs."""
import csv
import os
import io
import json

import numpy as np
import pytest

import keras
import tensorflow as tf

from common.cli import run_main
from data_prep.manifest import head_names
from tests.helpers import EVAL_SIZE, read_records


def manifest_of(shards):
    return json.loads((shards / "manifest.json").read_text())


def embeddings(model, records):
    """The 'embedding' layer's output for independently decoded records."""
    layer = keras.Model(model.inputs, model.get_layer("embedding").output)
    images = np.stack([np.round(tf.image.resize(tf.io.decode_jpeg(r["image/encoded"], channels=3),
                                                [EVAL_SIZE, EVAL_SIZE])) for r in records])
    return layer.predict(images, verbose=0)


def test_vote_breaks_ties_like_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    from eval.retrieval import neighbours, vote

    rng = np.random.default_rng(0)
    gallery, labels = rng.normal(size=(60, 5)), rng.integers(0, 4, 60)
    queries = rng.normal(size=(40, 5))
    for k in (1, 2, 4, 13):  # even k: ties happen
        ours = vote(labels[neighbours(gallery, queries, k, "manhattan")], 4)
        reference = KNeighborsClassifier(n_neighbors=k, metric="manhattan", algorithm="brute").fit(gallery, labels)
        np.testing.assert_array_equal(ours, reference.predict(queries))


def test_retrieval_matches_scikit_learn_on_the_same_embeddings(trained, tiny_shards, tmp_path):
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.neighbors import KNeighborsClassifier

    from eval.retrieval import retrieve

    metrics = retrieve(str(trained / "model.keras"), ks=(3, 1), out=str(tmp_path / "r"), examples=2)
    manifest = manifest_of(tiny_shards)
    model = keras.models.load_model(trained / "model.keras", compile=False)
    train, test = read_records(tiny_shards, manifest, "train"), read_records(tiny_shards, manifest, "test")
    normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    gallery, queries = normalise(embeddings(model, train)), normalise(embeddings(model, test))
    y_train = np.array([r["label/model"] for r in train])
    y_test = np.array([r["label/model"] for r in test])
    for row in metrics["by_k"]:
        knn = KNeighborsClassifier(n_neighbors=row["k"], metric="manhattan", algorithm="brute").fit(gallery, y_train)
        predicted = knn.predict(queries)
        assert row["accuracy"] == pytest.approx(np.mean(predicted == y_test), abs=1e-9)
        p, r, f, _ = precision_recall_fscore_support(y_test, predicted, average="weighted", labels=range(8),
                                                     zero_division=0)
        weighted = row["weighted"]
        assert (weighted["precision"], weighted["recall"], weighted["f1"]) == pytest.approx((p, r, f))
    assert metrics["retrieval"]["gallery_size"] == len(train) and metrics["retrieval"]["dimensions"] == 512
    out = tmp_path / "r"
    written = json.loads((out / "metrics.json").read_text())
    assert written["heads"]["model"]["accuracy"] == metrics["by_k"][0]["accuracy"]
    rows = list(csv.DictReader(open(out / "neighbours.csv")))
    assert len(rows) == len(test) and all(len(row["neighbours"].split()) == 3 for row in rows)
    assert (out / "figures" / "neighbours.png").stat().st_size > 5000 and "| k |" in (out / "report.md").read_text()


def test_retrieval_refuses_exports_unknown_layers_and_bad_options(trained, tmp_path, capsys):
    from eval import retrieval
    from eval.export import export

    export(str(trained / "model.keras"), "tflite", str(tmp_path / "m.tflite"), check=False)
    model = str(trained / "model.keras")
    cases = [(["--model", str(tmp_path / "m.tflite")], "needs the .keras or .h5"),
             (["--model", model, "--layer", "nope"], "no layer 'nope'"),
             (["--model", model, "--k", "0"], "--k"),
             (["--model", model, "--head", "colour"], "no head 'colour'")]
    for argv, expected in cases:
        assert run_main(retrieval.main, argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)


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


def test_export_cli_and_its_refusals(trained, tmp_path, capsys):
    from eval import export

    model = str(trained / "model.keras")
    out = tmp_path / "sm"
    assert run_main(export.main, ["--model", model, "--format", "savedmodel", "--out", str(out)]) == 0
    assert "top-1 agreement 100%" in capsys.readouterr().out
    assert run_main(export.main, ["--model", str(out), "--format", "tflite", "--out", str(tmp_path / "x.tflite")]) == 0
    assert (tmp_path / "x.json").is_file()
    capsys.readouterr()
    cases = [(["--model", model, "--format", "savedmodel", "--quantize"], "only for --format tflite"),
             (["--model", model, "--format", "tflite", "--out", str(tmp_path / "x.bin")], "ending in .tflite"),
             (["--model", str(out), "--format", "savedmodel"], "already an exported savedmodel"),
             (["--model", str(tmp_path / "nope.keras"), "--format", "tflite"], "does not exist")]
    for argv, expected in cases:
        assert run_main(export.main, argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == []  # nothing half-written


@pytest.mark.slow
def test_pipeline_normalised_models_are_normalised_by_the_predictor(tiny_shards, tmp_path):
    from eval.export import export
    from eval.loading import load_predictor
    from training.trainer import fit
    from tests.helpers import tiny_config

    config = tiny_config(tiny_shards, data={"image_size": 32, "normalize_in": "pipeline", "augment": "none"},
                         training={"epochs": 1, "steps_per_epoch": 1})
    fit(config, str(tmp_path / "run"))
    predictor = load_predictor(str(tmp_path / "run" / "model.keras"))
    assert predictor.pixels == "unit"  # the custom CNN's normalisation, applied outside the model
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    model = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    expected = model.predict(images.astype("float32") / 255.0, verbose=0)
    outputs = predictor.predict(images)
    for head in expected:
        np.testing.assert_allclose(outputs[head], expected[head], atol=1e-6)
    lite = export(str(tmp_path / "run" / "model.keras"), "tflite", str(tmp_path / "m.tflite"))
    assert lite["check"]["max_abs_difference"] < 1e-4


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


def test_export_never_deletes_or_overwrites_what_it_did_not_write(trained, tmp_path, capsys, monkeypatch):
    import shutil

    from eval import export

    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("eval_*", "export"))
    model = str(run / "model.keras")

    def snapshot(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    before = snapshot(run)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "fake.tflite").write_text("my notes, not a model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "manifest.json").write_text('{"another": "dataset"}')
    cases = [(["--format", "savedmodel", "--out", str(run)], "not empty and not an export"),
             (["--format", "savedmodel", "--out", str(mine)], "not empty and not an export"),
             (["--format", "savedmodel", "--out", str(tmp_path / "a_file")], "is a file"),
             (["--format", "tflite", "--out", str(tmp_path / "a_file" / "m.tflite")], "is a file, not a folder"),
             (["--format", "tflite", "--out", "/proc/self/m.tflite"], "cannot write to /proc/self"),
             (["--format", "tflite", "--out", str(tmp_path / "fake.tflite")], "not a TFLite model"),
             (["--format", "tflite", "--out", str(elsewhere / "m.tflite")], "holds another manifest.json")]
    monkeypatch.setattr(export, "load_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    for argv, expected in cases:  # refused before the model is even loaded
        assert run_main(export.main, ["--model", model] + argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    monkeypatch.undo()
    assert snapshot(run) == before and (mine / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "fake.tflite").read_text() == "my notes, not a model"
    assert (elsewhere / "manifest.json").read_text() == '{"another": "dataset"}'
    out = tmp_path / "export"
    for _ in range(2):  # a previous export of this command is replaced
        assert run_main(export.main, ["--model", model, "--format", "savedmodel", "--out", str(out),
                                      "--no-check"]) == 0
    assert (out / "saved_model.pb").is_file() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    (out / "eval_exp1_test").mkdir()  # what eval.test writes inside the export, and a user's note
    (out / "eval_exp1_test" / "report.md").write_text("# the export's evaluation")
    (out / "notes.txt").write_text("mine")
    stale = out / "variables" / "stale.bin"  # an export's own files are all replaced
    stale.write_bytes(b"old")
    assert run_main(export.main, ["--model", model, "--format", "savedmodel", "--out", str(out), "--no-check"]) == 0
    assert (out / "eval_exp1_test" / "report.md").read_text() == "# the export's evaluation"
    assert (out / "notes.txt").read_text() == "mine" and not stale.exists()
    assert (out / "saved_model.pb").is_file() and (out / "manifest.json").is_file()
    assert not [p for p in list(tmp_path.iterdir()) + list(out.iterdir()) if ".tmp-" in p.name]


READ_ONLY_EVAL = """
import sys
from common.cli import run_main
from eval import curves, export, retrieval, test
run = sys.argv[1]
model = run + "/model.keras"
for main, argv in ((test.main, ["--model", model]),
                   (retrieval.main, ["--model", model, "--k", "1000", "3", "--examples", "0"]),
                   (curves.main, [run]),
                   (export.main, ["--model", model, "--format", "tflite", "--no-check"])):
    print("rc", run_main(main, argv), flush=True)
"""


@pytest.mark.slow
def test_a_read_only_model_folder_writes_its_reports_to_the_working_folder(trained, tiny_shards, tmp_path):
    """As a run attached on Kaggle (/kaggle/input is read-only): eval.test, eval.retrieval and eval.curves
    ended in OSError: Read-only file system; they now write beside the working folder and say where."""
    import shutil
    import subprocess
    import sys

    from notebooks.standin import can_mount_read_only, read_only
    from tests.helpers import REPO

    if not can_mount_read_only():
        pytest.skip("no read-only bind mount here (unshare)")
    attached = tmp_path / "input" / "cars-run"
    shutil.copytree(trained, attached, ignore=shutil.ignore_patterns("checkpoints", "eval_*", "retrieval_*"))
    (tmp_path / "work").mkdir()
    result = subprocess.run(read_only([str(attached)], [sys.executable, "-c", READ_ONLY_EVAL, str(attached)]),
                            cwd=tmp_path / "work", capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.count("rc 0") == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Read-only" not in result.stderr
    assert result.stdout.count(f"{attached} cannot be written (read-only?): writing to ") == 4
    work = tmp_path / "work"
    assert json.loads((work / "cars-run_eval_model_test" / "metrics.json").read_text())["examples"] > 0
    gallery = len(read_records(tiny_shards, manifest_of(tiny_shards), "train"))
    retrieved = json.loads((work / "cars-run_retrieval_model_test" / "metrics.json").read_text())
    assert [row["k"] for row in retrieved["by_k"]] == [gallery, 3]  # the k used, not 1000
    assert f"--k 1000: more than the {gallery} train images of the gallery; k={gallery} is used" in result.stdout
    assert f"{gallery:>6}" in result.stdout and "1000" not in result.stdout.split("queries")[1].split("report")[0]
    assert sorted(path.name for path in (work / "cars-run_curves").iterdir())
    assert (work / "cars-run_export" / "model.tflite").stat().st_size > 1000
    assert sorted(path.name for path in attached.iterdir()) == sorted(path.name for path in trained.iterdir()
                                                                       if path.name != "checkpoints"
                                                                       and not path.name.startswith(("eval_",
                                                                                                     "retrieval_")))


def test_an_unwritable_out_is_refused_before_the_evaluation(trained, tmp_path, capsys, monkeypatch):
    from eval import retrieval, test

    def never(*args, **kwargs):
        raise AssertionError("evaluated before --out was checked")

    monkeypatch.setattr(test, "predict_split", never)
    monkeypatch.setattr(retrieval, "embed_split", never)
    (tmp_path / "a_file").write_text("in the way")
    model = str(trained / "model.keras")
    for main in (test.main, retrieval.main):
        for out, message in (("/proc/self/report", "cannot write to /proc/self/report"),
                             (str(tmp_path / "a_file" / "report"), "a_file is a file, not a folder")):
            assert run_main(main, ["--model", model, "--out", out]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: --out: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["eval.test", "eval.predict", "eval.app"])
def test_every_model_option_says_a_savedmodel_is_a_program(command, capsys):
    import importlib

    with pytest.raises(SystemExit):
        importlib.import_module(command).main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "A SavedModel is a program: loading it runs the graph it holds" in shown and "safe mode" in shown


def test_retrieval_within_one_split_leaves_each_query_out_of_its_neighbours(trained, tiny_shards, tmp_path, capsys):
    """--split train --fit-split train found each query itself at distance 0: accuracy 1.0, silently."""
    from sklearn.neighbors import NearestNeighbors

    from eval.retrieval import retrieve

    metrics = retrieve(str(trained / "model.keras"), ks=(1, 3), split="train", fit_split="train",
                       out=str(tmp_path / "r"), examples=0)
    assert "each query's own image is left out of its neighbours" in capsys.readouterr().out
    records = read_records(tiny_shards, manifest_of(tiny_shards), "train")
    model = keras.models.load_model(trained / "model.keras", compile=False)
    vectors = embeddings(model, records)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([r["label/model"] for r in records])
    found = NearestNeighbors(n_neighbors=2, metric="manhattan", algorithm="brute").fit(vectors).kneighbors(
        vectors, return_distance=False)
    nearest_other = np.array([row[1] if row[0] == i else row[0] for i, row in enumerate(found)])
    assert metrics["by_k"][0]["accuracy"] == pytest.approx(np.mean(labels[nearest_other] == labels))
    assert metrics["retrieval"]["leave_one_out"] and "own image left out" in (tmp_path / "r" / "report.md").read_text()
    for row in csv.DictReader(open(tmp_path / "r" / "neighbours.csv")):
        assert row["id"] not in row["neighbours"].split()


@pytest.mark.parametrize("folder", ["run", "shards"])
def test_reports_never_go_into_a_run_or_a_dataset_folder(trained, tiny_shards, tmp_path, capsys, folder):
    """eval.test --out <run folder> replaced the run's metrics.json with another model's; --out <shards>
    filled the dataset's folder with report files."""
    import shutil

    from eval import retrieval, test

    target = tmp_path / folder
    shutil.copytree(trained if folder == "run" else tiny_shards, target)
    before = {path: path.read_bytes() for path in target.rglob("*") if path.is_file()}
    for main in (test.main, retrieval.main):
        assert run_main(main, ["--model", str(trained / "model.keras"), "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--out {target} holds files that eval." in err and "(nothing was changed)" in err
        assert err.count("\n") == 1, err
    assert {path: path.read_bytes() for path in target.rglob("*") if path.is_file()} == before


def test_a_report_folder_is_written_again_in_place(trained, tmp_path):
    from eval.test import evaluate

    out = tmp_path / "report"
    first = evaluate(str(trained / "model.keras"), out=str(out))
    second = evaluate(str(trained / "model.keras"), out=str(out))  # its own files: replaced
    assert first["heads"] == second["heads"] and (out / "report.md").is_file()
