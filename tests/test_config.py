"""Strict typed configs: every shipped config loads and round-trips; mistakes are clear errors."""
import glob
import os

import pytest
import yaml

from common.cli import run_main
from common.errors import UserError
from training import fit as fit_module
from training.config import CONFIG_DIR, Config, config_from_dict, dump_config, load_config

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
                 else "on 2 CPU cores"):
        assert word in header, f"{name}: header lacks {word!r}"


@pytest.mark.parametrize("overrides, message", [
    (["data.image_sise=64"], "data.image_sise: unknown key (did you mean 'image_size'?)"),
    (["optimizer.learning_rate=fast"], "optimizer.learning_rate: expected a number (received 'fast')"),
    (["name=[1, 2]"], "name: expected a string"),
    (["data.batch_size=8.5"], "data.batch_size: expected an integer (received 8.5)"),
    (["model.backbone=resnet"], "did you mean 'resnet50'"),
    (["training.stages=[{epochs: 2, trainable: everything}]"], "training.stages[0].trainable"),
    (["loss.alpha=sometimes"], "loss.alpha: expected a number in [0, 1] or 'class_frequency'"),
    (["learning_rate"], "--set: expected key=value"),
    (["data.augment=heavy"], "unknown augmentation preset 'heavy'"),
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


def test_unknown_config_file_suggests_names(capsys):
    assert run_main(fit_module.main, ["--config", "focal_los.yaml"]) == 2
    error = capsys.readouterr().err
    assert "did you mean 'focal_loss.yaml'" in error and "Traceback" not in error
