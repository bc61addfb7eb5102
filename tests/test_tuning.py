"""Hyperparameter search: spaces as data, bad input before training, a tiny search, kill and resume."""
import csv
import json
import subprocess
import sys

import pytest
import yaml

from common.cli import run_main
from common.errors import UserError
from training.config import to_plain
from training.trainer import fit
from training.validation import load_config
from tuning import hyperband
from tuning.search import ALGORITHMS, SearchOptions, is_worker, search
from tuning.space import apply, check_space, evaluate, load_space
from tests.helpers import REPO, kill_when, tiny_config


@pytest.fixture
def tiny_yaml(tiny_shards, tmp_path):
    config = to_plain(tiny_config(tiny_shards, model={"head": "report004", "trunk_units": [32], "head_units": [16]},
                                  training={"steps_per_epoch": 2}))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_space(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_report_spaces_map_onto_configs(tiny_shards):
    base = tiny_config(tiny_shards)
    space = load_space("report004")
    check_space(space, base)
    values = {"units": 256, "layers": 2, "learning_rate": 0.001, "dropout": 0.3, "l2": 0.001, "optimizer": "sgd_m"}
    config = apply(base, space.overrides(values))
    assert config.model.trunk_units == (512, 512) and config.model.head_units == (256,)
    assert (config.optimizer.name, config.optimizer.momentum, config.optimizer.learning_rate) == ("sgd", 0.9, 0.001)
    assert (config.model.dropout, config.model.l2) == (0.3, 0.001)
    other = load_space("report000")
    with pytest.raises(UserError, match=r"schedule.patience: unknown key of the 'constant' schedule"):
        check_space(other, base)  # report 000's space tunes ReduceLROnPlateau: a plateau schedule is needed
    check_space(other, tiny_config(tiny_shards, schedule={"name": "plateau"}))
    assert {p.name for p in other.hyperparameters} == {"optimizer", "dropout", "batch_size", "patience", "factor",
                                                      "weight_decay", "learning_rate"}
    assert evaluate("[2 * units] * layers", {"units": 64, "layers": 3}) == [128, 128, 128]


@pytest.mark.parametrize("text, message", [
    ("hyperparameters: {}", "the search space is empty"),
    ("hyperparameters: {dropout: {float: [0.5, 0.1], key: model.dropout}}", "min 0.5 is greater than max 0.1"),
    ("hyperparameters: {dropout: {float: [0.1, 0.5], key: model.dropot}}", "model.dropot: unknown key"),
    ("hyperparameters: {lr: {choice: [0.1, fast], key: optimizer.learning_rate}}", "all numbers, all strings"),
    ("hyperparameters: {lr: {choice: [fast, slow], key: optimizer.learning_rate}}",
     "optimizer.learning_rate: expected a number (received 'fast')"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '[units] * depth'}",
     "depth is not a hyperparameter"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: \"__import__('os')\"}",
     "__import__ is not a hyperparameter"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '[units.__class__]'}",
     "is not allowed"),
    ("hyperparameters: {units: {int: [8, 16]}}", "would change nothing"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '[units] * 100000000000'}",
     "'[units] * 100000000000' fails at units=8: it makes a list of 100000000000 items (at most 1000)"),
    ("hyperparameters: {units: {int: [0, 16]}}\nderived: {model.trunk_units: '[64 // units]'}",
     "'[64 // units]' fails at units=0: integer division or modulo by zero"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '[units] + 2'}",
     "fails at units=8: can only concatenate list"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '[max() + units]'}",
     "'[max() + units]' fails at units=8: max expected at least 1 argument"),
    ("hyperparameters: {units: {int: [8, 16]}}\nderived: {model.trunk_units: '" + "-" * 100000 + "units'}",
     "is not valid arithmetic"),
    ("hyperparameters: {units: {range: [8, 16]}}", "exactly one of choice / int / float"),
])
def test_bad_spaces_are_refused_before_training(tiny_shards, tmp_path, text, message):
    with pytest.raises(UserError) as error:
        check_space(load_space(write_space(tmp_path, text)), tiny_config(tiny_shards))
    assert message in str(error.value)


@pytest.mark.parametrize("arguments, message", [
    (["--objective", "val_make_acc"], "does not report 'val_make_acc'; it reports loss, make_loss"),
    (["--max-epochs", "2", "--factor", "3"], "below the Hyperband minimum for --factor 3"),
    (["--factor", "1"], "reduction factor of at least 2"),
    (["--algorithm", "grid"], "--algorithm: unknown algorithm 'grid'; choose one of: bayesian, hyperband, random"),
    (["--space", "report005"], "no file 'report005'"),
])
def test_bad_options_are_clear_errors(tiny_yaml, tmp_path, capsys, arguments, message):
    argv = ["--config", str(tiny_yaml), "--out", str(tmp_path / "search")] + arguments
    assert run_main(hyperband.main, argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "search" / "tuner").exists()  # nothing trained


def test_a_search_never_goes_into_a_folder_of_other_files(tiny_yaml, tiny_shards, tmp_path, capsys):
    import shutil

    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    before = sorted(path.name for path in shards.iterdir())
    assert run_main(hyperband.main, ["--config", str(tiny_yaml), "--out", str(shards)]) == 2
    err = capsys.readouterr().err
    assert f"--out {shards} holds files that tuning.hyperband does not write (label_conflicts.csv" in err
    assert sorted(path.name for path in shards.iterdir()) == before


def read_trials(folder):
    return list(csv.DictReader(open(folder / "trials.csv")))


@pytest.mark.slow
def test_tiny_hyperband_search_to_completion_then_train_the_best(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["--config", str(tiny_yaml), "--out", str(out), "--max-epochs", "3", "--factor", "3",
            "--objective", "val_model_accuracy"]
    assert run_main(hyperband.main, argv) == 0
    trials = read_trials(out)
    assert len(trials) == 6 and {t["status"] for t in trials} == {"COMPLETED"}  # 3 + 1 + 2 for 3 epochs, factor 3
    assert {"units", "layers", "learning_rate", "dropout", "l2", "optimizer", "epochs", "bracket"} <= set(trials[0])
    assert sorted({t["epochs"] for t in trials}) == ["1", "3"]
    assert (out / "search.png").stat().st_size > 1000
    best_text = (out / "best.yaml").read_text()
    assert best_text.startswith("# best.yaml") and "# Command: python -m training.fit --config" in best_text
    best = load_config(str(out / "best.yaml"))
    best_trial = max(trials, key=lambda t: float(t["objective"]))
    assert best.model.trunk_units == tuple([2 * int(best_trial["units"])] * int(best_trial["layers"]))
    metrics = fit(best, str(tmp_path / "trained"))  # accepted unchanged
    assert set(metrics["heads"]) == {"make", "model", "year", "type"}
    with pytest.raises(UserError, match="holds a search with different settings"):
        search(SearchOptions(str(tiny_yaml), max_epochs=3, factor=3, objective="val_loss", out=str(out)))
    trial = sorted((out / "tuner" / "search").glob("trial_*/trial.json"))[-1]
    trial.write_text(trial.read_text()[:40])  # cut short, as a kill inside keras-tuner's old in-place write left it
    assert run_main(hyperband.main, argv) == 2
    assert f"the search cannot be continued: {trial} is damaged (cut short" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [name for name in ALGORITHMS.names() if name != "hyperband"])
def test_trial_budget_searches(tiny_yaml, tmp_path, algorithm):
    """Bayesian optimisation and random search (Hyperband above), two one-epoch trials each."""
    assert set(ALGORITHMS.names()) == {"hyperband", "bayesian", "random"}
    out = tmp_path / algorithm
    plateau = tmp_path / "plateau.yaml"
    plateau.write_text(yaml.safe_dump({**yaml.safe_load(tiny_yaml.read_text()), "schedule": {"name": "plateau"}}))
    summary = search(SearchOptions(str(plateau), "report000", max_epochs=1, algorithm=algorithm, max_trials=2,
                                   out=str(out)))
    trials = read_trials(out)
    assert len(trials) == 2 and {t["batch_size"] for t in trials} <= {"32", "64", "128"}
    assert summary["completed"] == 2 and (out / "best.yaml").is_file()


@pytest.mark.slow
def test_killed_search_continues_without_rerunning_completed_trials(tiny_yaml, tmp_path):
    out = tmp_path / "search"
    command = [sys.executable, "-m", "tuning.hyperband", "--config", str(tiny_yaml), "--out", str(out),
               "--max-epochs", "3", "--factor", "3"]
    def completed():
        found = {}
        for path in (out / "tuner" / "search").glob("trial_*/trial.json"):
            try:
                status = json.loads(path.read_text())["status"]
            except (ValueError, FileNotFoundError):  # renamed into place right now: not completed yet
                continue
            if status == "COMPLETED":
                found[path.parent.name] = path.stat().st_mtime_ns
        return found

    kill_when(command, lambda: len(completed()) >= 2, timeout=240)
    before = completed()
    assert 2 <= len(before) < 6, "the search was not interrupted"
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing the search" in resumed.stderr
    after = completed()
    assert len(after) == 6 and {name: after[name] for name in before} == before  # not run again
    assert len(read_trials(out)) == 6


def test_keras_tuner_writes_its_json_files_atomically(tmp_path, monkeypatch):
    """Written in place, a trial.json cut short by a kill made the next run end in a JSONDecodeError."""
    import keras_tuner
    from keras_tuner.src.engine.trial import Trial

    from common import fs

    written, write = [], fs.write_text_atomic
    monkeypatch.setattr(fs, "write_text_atomic", lambda path, text: written.append(path) or write(path, text))
    Trial(keras_tuner.HyperParameters(), trial_id="07").save(str(tmp_path / "trial.json"))
    assert written == [str(tmp_path / "trial.json")]
    assert json.loads((tmp_path / "trial.json").read_text())["trial_id"] == "07"
    assert [path.name for path in tmp_path.iterdir()] == ["trial.json"]  # no temporary file left


def test_only_the_chief_writes_results_in_distributed_mode(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    assert not is_worker()  # a single machine writes its own results
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.2")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert not is_worker()
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner3")
    assert is_worker()
