"""eval.export end to end on the tiny trained model, and what it refuses to overwrite."""

import numpy as np
import pytest

import keras

from common.cli import run_main






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
