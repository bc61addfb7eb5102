"""Strict typed configs: every shipped config loads and round-trips; mistakes are clear errors."""
import glob
import os

import pytest
import yaml

from common.cli import run_main
from common.errors import UserError
from training import fit as fit_module
from training.config import (CONFIG_DIR, SCHEDULE_CONFIGS, SCHEDULES, Config, CosineSchedule, PlateauSchedule,
                             StepSchedule, WarmupExpDecaySchedule, changed_fields, config_from_dict, dump_config, read_config)
from training.optim import SCHEDULE_BUILDERS
from training.validation import load_config

CONFIGS = sorted(os.path.basename(path) for path in glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
REPORT_CONFIGS = {"baseline.yaml", "optimal.yaml", "focal_loss.yaml", "report000_efficientnetv2_b2.yaml",
                  "report001_resnet50_focal.yaml", "report002_mobilenetv2_multitask.yaml",
                  "report003_resnet50_finetune.yaml", "report003_custom_cnn.yaml", "demo.yaml"}


def test_every_report_has_a_config():
    assert REPORT_CONFIGS <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_load_round_trip_and_are_documented(name):
    config = load_config(name)
    assert config_from_dict(yaml.safe_load(dump_config(config))) == config
    header = open(os.path.join(CONFIG_DIR, name)).read().split("\nname:")[0]
    for word in ("Expected", "Command: python -m training.fit --config " + name, "Runtime" if name != "demo.yaml"
                 else "docs/results/demo.json"):  # the demo's time is measured, not written by hand
        assert word in header, f"{name}: header lacks {word!r}"


@pytest.mark.parametrize("overrides, message", [
    (["data.image_sise=64"], "data.image_sise: unknown key (did you mean 'image_size'?)"),
    (["optimizer.learning_rate=fast"], "optimizer.learning_rate: expected a number (received 'fast')"),
    (["name=[1, 2]"], "name: expected a string"),
    (["data.batch_size=8.5"], "data.batch_size: expected an integer (received 8.5)"),
    (["model.backbone=resnet"], "model.backbone: unknown backbone 'resnet'; choose one of: "),
    (["model.backbone=resnet"], "(did you mean 'resnet50'?)"),
    (["training.stages=[{epochs: 2, trainable: everything}]"], "training.stages[0].trainable: unknown trainable mode"),
    (["loss.alpha=sometimes"], "loss.alpha: expected a number or one of 'class_frequency' (received 'sometimes')"),
    (["loss.alpha=2"], "loss.alpha: expected a number in [0, 1] or 'class_frequency'"),
    (["learning_rate"], "--set: expected key=value"),
    (["data.augment=heavy"], "data.augment: unknown augmentation preset 'heavy'"),
    (["data.augment_on=gpu"], "data.augment_on: unknown value 'gpu'; choose one of: device, host"),
    (["training.mixed_precision=bf16"], "training.mixed_precision: expected one of 'mixed_bfloat16', 'mixed_float16'"),
    (["schedule.name=cosin"], "schedule.name: unknown name 'cosin'; choose one of: constant, cosine, plateau"),
    (["schedule.drop_every=3"], "schedule.drop_every: unknown key of the 'cosine' schedule; allowed keys: name, warmup_epochs, min_lr"),
    (["loss.per_head={make: focal}"], "loss.per_head.make: unknown loss 'focal'"),
    (["data.class_balance=equal"], "data.class_balance: unknown class balance 'equal'"),
    (["training.strategy=gpus"], "training.strategy: unknown strategy 'gpus'"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(UserError) as error:
        load_config("demo.yaml", overrides)
    assert message in str(error.value)


def test_overrides_are_typed():
    config = load_config("demo", ["optimizer.learning_rate=1e-4", "data.heads=[make, type]",
                                  "training.stages=[{epochs: 1, trainable: frozen}, {epochs: 2, trainable: all}]",
                                  "training.mixed_precision=null", "loss.head_weights={make: 0.1}"])
    assert config.optimizer.learning_rate == 1e-4 and config.data.heads == ("make", "type")
    assert config.total_epochs == 3 and config.training.stages[0].trainable == "frozen"
    assert config.loss.head_weights == {"make": 0.1} and isinstance(config, Config)


@pytest.mark.parametrize("content, message", [
    (b"name: t\ndata:\n\tshards: x\n", "is not valid YAML at line 3, column 1: found character '\\t' that cannot "
                                        "start any token (YAML indents with spaces, not tabs)"),
    (b"a: [1, 2\n", "is not valid YAML at line 2, column 1: expected ',' or ']'"),
    (bytes(range(128, 256)), "is not a text file (expected YAML)"),
    (b"- a\n- b\n", "expected a mapping at the top level (received list)"),
])
def test_a_config_that_is_not_yaml_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert run_main(fit_module.main, ["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    assert not (tmp_path / "run").exists()


def test_unknown_config_file_suggests_names(capsys):
    assert run_main(fit_module.main, ["--config", "focal_los.yaml"]) == 2
    error = capsys.readouterr().err
    assert "did you mean 'focal_loss.yaml'" in error and "Traceback" not in error


def test_each_schedule_has_its_own_keys_and_its_factory():
    """A key of another schedule is refused (it used to be ignored); names and factories agree."""
    assert {cls.__dataclass_fields__["name"].default for cls in SCHEDULE_CONFIGS} == set(SCHEDULES.names())
    assert set(SCHEDULE_BUILDERS) == set(SCHEDULE_CONFIGS) == {SCHEDULES.get(name) for name in SCHEDULES.names()}
    assert SCHEDULES.get("report004") is WarmupExpDecaySchedule  # the alias, from the same table
    assert isinstance(read_config("demo", ["schedule.name=report004"]).schedule, WarmupExpDecaySchedule)
    assert isinstance(read_config("report002_mobilenetv2_multitask").schedule, StepSchedule)
    assert isinstance(read_config("report000_efficientnetv2_b2").schedule, PlateauSchedule)
    assert isinstance(read_config("demo").schedule, CosineSchedule)
    with pytest.raises(UserError, match="schedule.patience: unknown key"):
        read_config("demo", ["schedule.patience=3"])


def test_report_names_stay_accepted_aliases_and_saved_runs_still_load():
    """``schedule: report004`` and ``head: report004`` (the reports' names) load as the descriptive
    ``warmup_exp_decay`` and ``trunk_mlp``; a run saved with the old flat schedule still loads."""
    from models.heads import HEADS

    assert read_config("baseline").schedule == WarmupExpDecaySchedule(warmup_epochs=5, peak_lr=0.1)
    assert HEADS.canonical("report004") == "trunk_mlp" and HEADS.get("report004") is HEADS.get("trunk_mlp")
    saved = {"name": "old", "schedule": {  # as the flat schedule config wrote every run's config.yaml
        "name": "report004", "warmup_epochs": 0, "start_lr": 1e-6, "peak_lr": 0.1, "warmup_divisor": 6.0,
        "decay_rate": 0.1, "drop_every": 10, "drop_at": [], "drop_factor": 0.1, "min_lr": 0.0, "monitor": "val_loss",
        "factor": 0.1, "patience": 5, "cooldown": 0, "min_delta": 0.0001}}
    assert config_from_dict(saved).schedule == WarmupExpDecaySchedule(warmup_epochs=5)  # 0 meant the report's 5
    saved["schedule"]["drop_every"] = 3  # a value someone set: not silently dropped
    with pytest.raises(UserError, match="schedule.drop_every: unknown key"):
        config_from_dict(saved)


def test_resume_mutable_fields_are_marked_on_the_fields():
    base = read_config("demo")
    moved = read_config("demo", ["training.epochs=40", "data.shards=gs://bucket/shards", "training.strategy=tpu",
                                 "training.jit_compile=true", "description=longer"])
    assert changed_fields(base, moved) == []
    other = read_config("demo", ["optimizer.learning_rate=0.5", "schedule.warmup_epochs=2", "data.image_size=96"])
    assert changed_fields(base, other) == ["data.image_size", "optimizer.learning_rate", "schedule.warmup_epochs"]


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.learning_rate=.nan"], "optimizer.learning_rate: expected a finite number (received nan)"),
    (["loss.gamma=.inf"], "loss.gamma: expected a finite number (received inf)"),
    (["loss.head_weights={make: .nan}"], "loss.head_weights.make: expected a finite number"),
    (["training.stages=[{epochs: 1, learning_rate: -0.5}]"],
     "training.stages[0].learning_rate: expected a rate in (0, 10] (received -0.5)"),
    (["schedule={name: step, drop_every: 0}"], "schedule.drop_every: expected 1 or more (received 0)"),
    (["schedule={name: step, drop_at: [0, 3]}"], "schedule.drop_at: expected epochs of 1 or more"),
    (["schedule={name: step, drop_factor: 0}"], "schedule.drop_factor: expected a factor in (0, 1]"),
    (["schedule={name: plateau, factor: 1.5}"], "schedule.factor: expected a factor in (0, 1)"),
    (["schedule={name: plateau, patience: -1}"], "schedule.patience: expected 0 or more"),
    (["schedule={name: report004, peak_lr: 0}"], "schedule.peak_lr: expected a rate in (0, 10]"),
    (["schedule={name: report004, warmup_divisor: 0}"], "schedule.warmup_divisor: expected more than 0"),
    (["schedule={name: cosine, warmup_epochs: -2}"], "schedule.warmup_epochs: expected 0 or more"),
    (["training.seed=-1"], "training.seed: expected an integer in [0, 4294967295] (received -1)"),
    (["optimizer.scale_with_batch=true", "optimizer.base_batch_size=0"],
     "optimizer.base_batch_size: expected 1 or more (received 0)"),
    (["optimizer.clipnorm=0"], "optimizer.clipnorm: expected more than 0"),
    (["training.early_stopping_patience=-3"], "training.early_stopping_patience: expected 0 or more"),
    (["training.verbose=5"], "training.verbose: expected 0, 1 or 2 (received 5)"),
    (["data.image_size=4096"], "data.image_size: expected 0 (the backbone's default) or 32 to 1024 pixels (received "
                               "4096"),
])
def test_numbers_are_checked_for_range_and_nan(overrides, message):
    with pytest.raises(UserError) as error:
        load_config("demo.yaml", overrides)
    assert message in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    (["training.evaluate_split=tset"], "training.evaluate_split: unknown split 'tset'; choose one of: test, train, val "
                                       "(did you mean 'test'?)"),
    (["loss.head_weights={colour: 1.0}"], "loss.head_weights: unknown head 'colour'; choose one of: make, model, "
                                          "type, year"),
    (["loss.per_head={colour: sigmoid_focal}"], "loss.per_head: unknown head 'colour'"),
    (["data.val_split=validation"], "data.val_split: unknown split 'validation'"),
    (["data.balance_head=colour", "data.class_balance=weights"], "data.balance_head: unknown head 'colour'"),
    (["data.heads=[make]", "data.class_balance=weights"],
     "data.balance_head: unknown head 'model'; choose one of: make (received 'model') (the default for "
     "data.class_balance; set data.balance_head)"),
    (["data.batch_size=100000"], "data.batch_size: the global batch (100000 = 100000 × 1 replica(s)) is larger than "
                                 "the 47 train examples; choose at most 47 (or set training.steps_per_epoch"),
    (["data.global_batch_size=64"], "data.global_batch_size: the global batch (64) is larger than the 47 train"),
])
def test_every_key_names_something_that_exists(tiny_shards, overrides, message):
    from training.plan import make_plan

    with pytest.raises(UserError) as error:
        make_plan(load_config("demo.yaml", [f"data.shards={tiny_shards}", "data.prepare=null"] + overrides))
    assert message in str(error.value)
