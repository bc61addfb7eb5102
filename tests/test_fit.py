"""training.fit end to end at toy scale: run folder, resume, stages, balance, every shipped config."""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

import keras
import tensorflow as tf

from common.cli import run_main
from common.errors import UserError
from training.config import CONFIG_DIR, config_from_dict, read_yaml, to_plain
from training.plan import apply_stage, compile_model, make_plan, new_model, training_data
from training.trainer import fit
from training.validation import load_config
from tests.helpers import REPO, epoch_done, kill_when, tiny_config


def history(run):
    return list(csv.DictReader(open(run / "history.csv")))


@pytest.mark.slow
def test_fit_writes_a_complete_run_folder(tiny_shards, tmp_path):
    config = tiny_config(tiny_shards, loss={"name": "sigmoid_focal"}, training={"model_name": "focal_loss.h5"})
    run = tmp_path / "run"
    metrics = fit(config, str(run))
    for name in ("config.yaml", "manifest.json", "model.keras", "focal_loss.h5", "last.keras", "history.csv",
                 "metrics.json", "checkpoints/state.json"):
        assert (run / name).is_file(), name
    assert config_from_dict(read_yaml(str(run / "config.yaml"))) == config
    assert json.loads((run / "manifest.json").read_text()) == json.loads((tiny_shards / "manifest.json").read_text())
    assert [row["epoch"] for row in history(run)] == ["1", "2"]
    assert {"val_model_accuracy", "make_loss", "learning_rate"} <= set(history(run)[0])
    assert sorted(p.name for p in (run / "curves").iterdir()) == ["make.png", "model.png", "type.png", "year.png"]
    tags = set()
    for event_file in (run / "logs").rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(event_file)):
            tags |= {value.tag for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value}
    assert {"epoch_loss", "epoch_model_accuracy", "epoch_learning_rate"} <= tags
    assert set(metrics["heads"]) == {"make", "model", "year", "type"} and metrics["split"] == "test"
    assert all(0 <= entry["accuracy"] <= 1 for entry in metrics["heads"].values())
    best = keras.models.load_model(run / "model.keras")  # no custom_objects needed
    legacy = keras.models.load_model(run / "focal_loss.h5")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for head in ("make", "model"):
        np.testing.assert_allclose(best.predict(images, verbose=0)[head], legacy.predict(images, verbose=0)[head],
                                   atol=1e-5)
    assert type(best.loss["model"]).__name__ == "SigmoidFocalCrossEntropy"


def test_without_tensorboard_a_run_trains_and_says_its_logs_are_off(tiny_shards, tmp_path, monkeypatch, caplog):
    """TF 2.21 no longer installs TensorBoard, nor does a JAX image: tf.summary would stop at epoch 1
    (TBNotInstalledError); the run goes on without its TensorBoard logs and says so once."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="training.callbacks"):
        fit(tiny_config(tiny_shards, training={"epochs": 1}), str(run))
    assert (run / "model.keras").is_file() and [row["epoch"] for row in history(run)] == ["1"]
    assert not list(run.rglob("events.out.tfevents.*"))
    said = [record.getMessage() for record in caplog.records if "TensorBoard is not installed" in record.getMessage()]
    assert len(said) == 1 and "no TensorBoard logs" in said[0]


@pytest.mark.slow
def test_same_command_does_nothing_changes_are_refused_more_epochs_extend(tiny_shards, tmp_path, capsys):
    config = tiny_config(tiny_shards, training={"epochs": 1, "evaluate_split": None})
    run = tmp_path / "run"
    fit(config, str(run))
    stamp = (run / "model.keras").stat().st_mtime_ns
    fit(config, str(run))
    assert "already complete" in capsys.readouterr().out and (run / "model.keras").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match=r"different configuration \(optimizer.learning_rate\)"):
        fit(tiny_config(tiny_shards, optimizer={"name": "adam", "learning_rate": 0.1}), str(run))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds files that training.fit did not write"):
        fit(config, str(tmp_path / "other"))
    assert json.loads((run / "checkpoints" / "state.json").read_text())["finished"]
    fit(tiny_config(tiny_shards, training={"epochs": 3, "evaluate_split": None}), str(run))  # finished: extend it
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["finished"]


@pytest.mark.slow
def test_stages_device_augmentation_and_mixed_precision(tiny_shards, tmp_path):
    stages = [{"epochs": 1, "trainable": "frozen", "optimizer": "adam", "learning_rate": 0.01},
              {"epochs": 1, "trainable": "last_blocks", "unfreeze_blocks": 1, "optimizer": "sgd"}]
    config = tiny_config(tiny_shards, data={"augment": "report000", "augment_on": "device"},
                         training={"stages": stages, "mixed_precision": "mixed_bfloat16", "steps_per_execution": 2})
    try:
        fit(config, str(tmp_path / "run"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [row["epoch"] for row in history(tmp_path / "run")] == ["1", "2"]
    model = keras.models.load_model(tmp_path / "run" / "last.keras")
    augmentation = [type(layer).__name__ for layer in model.get_layer("augmentation").layers]
    assert {"RandomFlip", "RandomRotation", "RandomGrayscale"} <= {name for name in augmentation} | {
        type(layer.layer).__name__ for layer in model.get_layer("augmentation").layers if hasattr(layer, "layer")}
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("block4_conv").trainable and not backbone.get_layer("block1_conv").trainable
    assert model.get_layer("backbone").get_layer("block4_conv").compute_dtype == "bfloat16"
    assert isinstance(model.output, dict) and all(output.dtype == "float32" for output in model.output.values())


@pytest.mark.slow
def test_balanced_sampling_plateau_and_early_stopping(tiny_shards, tmp_path):
    # frozen backbone (BatchNorm statistics fixed) and a vanishing rate: validation loss cannot improve
    config = tiny_config(tiny_shards, data={"class_balance": "weights"}, model={"trainable": "frozen"},
                         loss={"name": "categorical_focal", "alpha": "class_frequency"},
                         schedule={"name": "plateau", "patience": 1, "factor": 0.5, "monitor": "val_loss"},
                         optimizer={"name": "sgd", "learning_rate": 1e-9},
                         training={"epochs": 8, "early_stopping_patience": 3, "evaluate_split": None})
    fit(config, str(tmp_path / "run"))
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert state["stopped_early"] and state["epoch"] == 4
    assert set(state["callbacks"]) == {"early_stopping", "plateau"}
    rates = [float(row["learning_rate"]) for row in history(tmp_path / "run")]
    assert rates[-1] < rates[0]  # ReduceLROnPlateau lowered it


SHIPPED = sorted(name for name in os.listdir(CONFIG_DIR) if name.endswith(".yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_trains_a_step(name, tiny_shards):
    """Each report's configuration, shrunk (32 px, no downloads), builds its plan, pipeline, model, losses
    and optimizer and takes one training step per fine-tuning stage (eagerly: tracing big graphs is slow)."""
    raw = to_plain(load_config(name))
    raw["data"].update(shards=str(tiny_shards), image_size=32, batch_size=4, global_batch_size=None, prepare=None)
    raw["model"]["weights"] = "none"
    if raw["model"]["backbone"] == "efficientnet_b5":  # same family and code path, a tenth of the build time
        raw["model"]["backbone"] = "efficientnet_b0"
    raw["training"].update(strategy="cpu", steps_per_epoch=1)
    plan = make_plan(config_from_dict(raw))
    assert (plan.global_batch, plan.image_size, plan.steps_per_epoch) == (4, 32, 1)
    batch = next(iter(training_data(plan)[0]))
    model = new_model(plan)
    for stage in plan.stages:
        apply_stage(model, plan, stage.config)
        compile_model(model, plan, stage.config)
        model.run_eagerly = True
        logs = model.train_on_batch(*batch, return_dict=True)
        assert np.isfinite(logs["loss"]), logs
    assert sorted(model.output_names) == sorted(plan.heads)


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_trains_like_an_uninterrupted_run(tiny_shards, tmp_path):
    """SIGKILL mid-epoch, then the same command: no epoch twice, none missing, and every epoch's numbers
    equal those of an uninterrupted run. Random crops on the host, flips/rotations/colours as Keras
    layers and dropout all draw random numbers, so this fails if a resumed process replays the draws
    of epoch 1 (the data stream, the augmentation, dropout's seed generators) or loses their state.

    Tolerance: with ``data.deterministic`` both processes compute the same operations on the same
    batches from the same weights, optimizer and random states; what may differ is the order of
    multithreaded float reductions, which moves a loss by far less than 1e-3 relative (the replay
    changed the first resumed epoch's training loss by about 15%).
    """
    config = to_plain(tiny_config(tiny_shards, data={"image_size": 32, "augment": "report000", "augment_on": "device",
                                                     "deterministic": True},
                                  model={"dropout": 0.3},
                                  training={"epochs": 5, "steps_per_epoch": 40, "evaluate_split": None}))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    def command(run):
        return [sys.executable, "-m", "training.fit", "--config", str(path), "--out", str(run)]

    run, reference = tmp_path / "run", tmp_path / "uninterrupted"
    state_file = run / "checkpoints" / "state.json"
    kill_when(command(run), epoch_done(state_file, 2), timeout=240, settle=0.3)  # into the next epoch
    done = json.loads(state_file.read_text())["epoch"]
    assert 2 <= done < 5, "the process was not interrupted mid-training"
    resumed = subprocess.run(command(run), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} after epoch {done} of 5" in resumed.stderr
    epochs = [int(row["epoch"]) for row in history(run)]
    assert epochs == [1, 2, 3, 4, 5]
    kept = sorted(path.name for path in (run / "checkpoints").glob("*.keras"))
    assert kept == ["epoch-0004.keras", "epoch-0005.keras"] and not list(run.rglob("*.tmp-*"))  # + the fallback
    straight = subprocess.run(command(reference), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert straight.returncode == 0, straight.stderr[-3000:]
    for ours, theirs in zip(history(run), history(reference)):
        assert set(ours) == set(theirs)
        for key in sorted(set(ours) - {"epoch"}):
            assert float(ours[key]) == pytest.approx(float(theirs[key]), rel=1e-3, abs=1e-6), (ours["epoch"], key)

@pytest.mark.parametrize("sections, key", [
    ({"training": {"monitor": "val_colour_accuracy"}}, "training.monitor"),
    ({"training": {"early_stopping_patience": 2, "early_stopping_monitor": "val_model_acc"}},
     "training.early_stopping_monitor"),
    ({"schedule": {"name": "plateau", "monitor": "val_year_top5"}}, "schedule.monitor"),  # 5 years: no top-5
])
def test_monitors_are_checked_before_the_first_step(tiny_shards, tmp_path, sections, key):
    config = tiny_config(tiny_shards, **sections)
    with pytest.raises(UserError, match=rf"{key}: .*choose one of: .*val_model_accuracy") as raised:
        fit(config, str(tmp_path / "run"))
    choices = str(raised.value).split("choose one of: ")[1].split(" (")[0].split(", ")
    assert "val_model_top5" in choices and "val_year_top5" not in choices  # year has 5 classes: no top-5
    assert not (tmp_path / "run" / "checkpoints" / "state.json").exists()
    assert not list((tmp_path / "run").rglob("*.keras"))


@pytest.mark.slow
def test_a_diverging_run_stops_at_the_first_nan_and_keeps_the_last_finite_epoch(tiny_shards, tmp_path, monkeypatch):
    """Epoch 1 trains normally; the schedule then multiplies the rate by 1e33 and the loss becomes NaN.
    (The config check refuses such a factor; the test lifts that check to make a run diverge.)"""
    from training import validation
    monkeypatch.setitem(validation.SCHEDULE_RANGES, "drop_factor", dict(low=0.0, above=True, expected="more than 0"))
    config = tiny_config(tiny_shards, optimizer={"name": "sgd", "learning_rate": 0.001},
                         schedule={"name": "step", "drop_at": [1], "drop_factor": 1e33},
                         training={"epochs": 3, "evaluate_split": None})
    run = tmp_path / "run"
    with pytest.raises(UserError) as raised:
        fit(config, str(run))
    message = str(raised.value)
    assert "diverged" in message and re.search(r"at epoch 2, step [1-3] ", message) and "rate 1e+30" in message
    assert "keeps epoch 1," in message and "optimizer.learning_rate" in message and "\n" not in message
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and state["best"]["epoch"] == 1 and np.isfinite(state["best"]["value"])
    assert [row["epoch"] for row in history(run)] == ["1"]
    best = keras.models.load_model(run / "model.keras")
    assert all(np.isfinite(weight).all() for weight in best.get_weights())


def test_a_nan_never_becomes_the_best_value():
    from training.callbacks import improved

    assert not improved(float("nan"), None, "max") and not improved(float("nan"), 0.5, "min")
    assert not improved(float("inf"), None, "max") and improved(0.4, None, "min") and improved(0.6, 0.5, "max")


@pytest.mark.parametrize("out, message", [("/proc/self/run", "cannot write to /proc/self/run"),
                                          ("{tmp}/a_file", "a_file is a file, not a folder"),
                                          ("{tmp}/a_file/run", "a_file is a file, not a folder")])
def test_an_unwritable_run_folder_is_refused_before_any_work(tiny_shards, tmp_path, capsys, out, message):
    from training.fit import main  # the command line

    (tmp_path / "a_file").write_text("in the way")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_plain(tiny_config(tiny_shards))))
    assert run_main(main, ["--config", str(path), "--out", out.replace("{tmp}", str(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "error: --out: " in err and message in err and "Traceback" not in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_the_same_command_resumes(tiny_shards, tmp_path, monkeypatch):
    import errno

    from training import callbacks

    config = tiny_config(tiny_shards, training={"epochs": 2, "evaluate_split": None})
    run = tmp_path / "run"
    original = callbacks.save_model_atomic

    def full_disk_at_epoch_2(model, path):
        if "epoch-0002" in str(path):
            with open(str(path) + ".tmp-partial", "wb") as handle:  # what a full disk leaves behind
                handle.write(b"PK")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(model, path)

    monkeypatch.setattr(callbacks, "save_model_atomic", full_disk_at_epoch_2)
    with pytest.raises(UserError) as raised:
        fit(config, str(run))
    message = str(raised.value)
    assert "No space left on device" in message and "epoch 1" in message and "same command" in message
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 1
    monkeypatch.undo()
    fit(config, str(run))  # space freed: the same command resumes after epoch 1
    assert [row["epoch"] for row in history(run)] == ["1", "2"]
    assert not list(run.rglob("*.tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("split, how", [("train", "corrupt"), ("val", "missing")])
def test_damaged_or_missing_shards_are_named_with_the_fix(tiny_shards, tmp_path, split, how):
    from tests.helpers import damaged_copy

    shards, name = damaged_copy(tiny_shards, tmp_path / "shards", split, how)
    with pytest.raises(UserError) as raised:
        fit(tiny_config(shards, training={"epochs": 1}), str(tmp_path / "run"))
    message = str(raised.value)
    assert name in message and f"python -m data_prep.verify {shards}" in message and "\n" not in message
    assert ("missing" if how == "missing" else "damaged") in message
    if how == "missing":  # found before training, not after an epoch
        assert not (tmp_path / "run" / "checkpoints" / "state.json").exists()


@pytest.mark.slow
def test_a_run_saved_under_the_report_names_resumes_under_the_descriptive_ones(tiny_shards, tmp_path):
    """A run folder from before the rename (head: report004, a flat schedule listing every key) is the
    same run as the shipped configurations now spell it: the same command extends it."""
    run = tmp_path / "run"
    old = tiny_config(tiny_shards, model={"head": "report004", "trunk_units": [16], "head_units": [8]},
                      schedule={"name": "report004", "warmup_epochs": 1, "peak_lr": 0.003},
                      training={"epochs": 1, "evaluate_split": None})
    fit(old, str(run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["schedule"] = {"name": "report004", "warmup_epochs": 1, "start_lr": 1e-6, "peak_lr": 0.003,
                         "warmup_divisor": 6.0, "decay_rate": 0.1, "drop_every": 10, "drop_at": [], "drop_factor": 0.1,
                         "min_lr": 0.0, "monitor": "val_loss", "factor": 0.1, "patience": 5, "cooldown": 0,
                         "min_delta": 0.0001}  # as the flat schedule config wrote it
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    new = tiny_config(tiny_shards, model={"head": "trunk_mlp", "trunk_units": [16], "head_units": [8]},
                      schedule={"name": "warmup_exp_decay", "warmup_epochs": 1, "peak_lr": 0.003},
                      training={"epochs": 2, "evaluate_split": None})
    fit(new, str(run))
    assert [row["epoch"] for row in history(run)] == ["1", "2"]
