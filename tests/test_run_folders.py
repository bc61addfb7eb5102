"""A run folder belongs to its run: training.fit refuses folders it did not make, never retrains a finished
run without --overwrite, writes only inside its folder, holds a lock while it trains, and resumes only on
the data it started with — refusing before anything of the run is replaced."""
import json

import pytest

from common.errors import UserError
from common.lock import folder_lock
from data_prep.build import build_dataset
from tests.helpers import build_options, tiny_config
from training import fit as fit_command
from training.trainer import RUN_LOCK, RUN_MARKER, fit


def contents(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_folder_holding_a_users_files_is_refused_and_left_as_it_was(tiny_shards, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in (("config.yaml", "my notes"), ("history.csv", "a,b\n1,2\n"), ("model.keras", "not a model")):
        (out / name).write_text(text)
    before = contents(out)
    with pytest.raises(UserError, match=r"--out .*mine holds files that training.fit did not write \(config.yaml, "
                                        r"history.csv, model.keras\); choose another --out"):
        fit(tiny_config(tiny_shards, training={"epochs": 1}), str(out))
    assert contents(out) == before


@pytest.mark.slow
def test_a_finished_run_is_not_retrained_over_without_overwrite(tiny_shards, tmp_path, capsys):
    config = tiny_config(tiny_shards, training={"epochs": 1, "evaluate_split": None})
    run = tmp_path / "run"
    fit(config, str(run))
    assert (run / RUN_MARKER).is_file()
    for path in sorted((run / "checkpoints").iterdir()):
        path.unlink()
    (run / "checkpoints").rmdir()
    before = contents(run)
    with pytest.raises(UserError, match=r"holds a run whose checkpoints are gone \(checkpoints/state.json\), so it "
                                        r"cannot be resumed; pass --overwrite to train it again from scratch"):
        fit(config, str(run))
    assert contents(run) == before
    yaml = tmp_path / "tiny.yaml"
    yaml.write_text(json.dumps({"name": "tiny", "data": {"shards": str(tiny_shards), "image_size": 32, "batch_size": 8},
                                "model": {"backbone": "custom_cnn", "weights": "none", "head": "linear"},
                                "training": {"epochs": 1, "steps_per_epoch": 2, "verbose": 0,
                                             "evaluate_split": None}}))
    assert fit_command.main(["--config", str(yaml), "--out", str(run), "--overwrite"]) == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and (run / "model.keras").read_bytes() != before["model.keras"]


def test_a_model_name_is_a_name_not_a_path(tiny_shards, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("../victim/model.keras", "/tmp/model.keras", "sub/model.h5", "last.keras", ".keras"):
        with pytest.raises(UserError, match="training.model_name: expected a file name"):
            fit(tiny_config(tiny_shards, training={"model_name": name}), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists() and list(victim.iterdir()) == []


def test_a_second_fit_on_a_folder_being_trained_is_refused(tiny_shards, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with folder_lock(str(run), "training run", RUN_LOCK):  # as the first fit holds it while it trains
        with pytest.raises(UserError, match=r"--out .*run is being written by another training run \(process \d+"):
            fit(tiny_config(tiny_shards, training={"epochs": 1}), str(run))
    assert sorted(path.name for path in run.iterdir()) == []


@pytest.mark.slow
def test_a_resume_on_other_data_is_refused_before_anything_is_replaced(stanford_tree, tiny_shards, tmp_path):
    """Rebuilt with another seed (other splits, other records), or with other classes: one line, and the
    run's config.yaml and manifest.json stay as they were."""
    root, _ = stanford_tree
    run = tmp_path / "run"
    fit(tiny_config(tiny_shards, training={"epochs": 1, "evaluate_split": None}), str(run))
    before = contents(run)
    reseeded = tmp_path / "reseeded"
    build_dataset(build_options(root, reseeded, split="stratified", max_side=64, num_shards=2, val_fraction=0.2,
                                test_fraction=0.2, seed=7))
    more = tiny_config(reseeded, training={"epochs": 2, "evaluate_split": None})
    with pytest.raises(UserError, match=r"resuming .*run on other data: the records of the test split differ; the records of the train split "
                                        r"differ"):
        fit(more, str(run))
    assert contents(run) == before
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for path in tiny_shards.iterdir():
        if path.is_file():
            (renamed / path.name).write_bytes(path.read_bytes())
    manifest["heads"]["make"]["names"]["0"] = "Not The Same Make"
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"on other data: the classes of head make differ"):
        fit(tiny_config(renamed, training={"epochs": 2, "evaluate_split": None}), str(run))
    assert contents(run) == before


def history_epochs(run):
    return [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated checkpoint", "deleted checkpoint", "empty state"])
def test_a_damaged_last_epoch_resumes_from_the_one_before(tiny_shards, tmp_path, caplog, damage):
    run = tmp_path / "run"
    fit(tiny_config(tiny_shards, training={"epochs": 2, "evaluate_split": None}), str(run))
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    last = run / state["checkpoint"]
    assert (run / "checkpoints" / "state.previous.json").is_file() and (run / "checkpoints" / "epoch-0001.keras").is_file()
    if damage == "truncated checkpoint":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "deleted checkpoint":
        last.unlink()
    else:
        (run / "checkpoints" / "state.json").write_text("")
    with caplog.at_level("WARNING", logger="training.run"):
        fit(tiny_config(tiny_shards, training={"epochs": 3, "evaluate_split": None}), str(run))
    assert any("resuming from the epoch before, 1" in record.getMessage() for record in caplog.records)
    assert history_epochs(run) == ["1", "2", "3"]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 3


@pytest.mark.slow
def test_with_no_good_epoch_left_the_resume_says_what_to_do(tiny_shards, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_shards, training={"epochs": 1, "evaluate_split": None}), str(run))
    (run / "checkpoints" / "state.json").write_text("{")
    before = contents(run)
    with pytest.raises(UserError, match=r"state.json is damaged \(empty, cut short or not a run state\), and no "
                                        r"earlier epoch is kept to resume from: --overwrite trains"):
        fit(tiny_config(tiny_shards, training={"epochs": 2, "evaluate_split": None}), str(run))
    assert contents(run) == before
