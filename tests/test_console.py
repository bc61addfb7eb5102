"""What the commands print: the epoch line, the progress bar, help texts, no start-up banners."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from training.console import EpochLine, epoch_line
from training.run import Best

LOGS = {"loss": 2.5264, "val_loss": 1.4227, "make_accuracy": 0.9554, "val_make_accuracy": 1.0,
        "model_accuracy": 0.7113, "val_model_accuracy": 0.9007, "model_top5": 0.98, "val_model_top5": 1.0,
        "year_accuracy": 0.72, "year_loss": 0.71}


def test_the_epoch_line_is_short_and_grouped_by_head_in_the_heads_order():
    line = epoch_line(3, 25, 4.07, LOGS, ["make", "model", "year", "type"], best=True)
    assert line == "epoch 3/25  4.1 s  loss 2.53/1.42 · make 0.96/1.00 · model 0.71/0.90 · year 0.72  best"
    assert "top5" not in line and len(line) < 120  # the full history stays in history.csv


class State:
    best = Best(0.9, 2, "val_model_accuracy")


class Stdout(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self):
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_a_terminal_gets_a_bar_with_the_time_left_and_a_log_one_line_per_epoch(terminal, monkeypatch):
    stream = Stdout(terminal)
    monkeypatch.setattr(sys, "stdout", stream)
    callback = EpochLine(["make", "model"], 4, State(), terminal=terminal)
    callback.set_params({"steps": 5, "epochs": 4})
    for epoch in (0, 1):
        callback.on_epoch_begin(epoch)
        for step in range(5):
            callback.on_train_batch_end(step)
        callback.on_epoch_end(epoch, LOGS)
    output = stream.getvalue()
    lines = [line for line in output.replace("\r", "\n").splitlines() if line.startswith("epoch 2/4  ")]
    assert lines and lines[-1].endswith("model 0.71/0.90  best")  # epoch 2 is the best one
    assert ("epoch 1/4:" in output and "/5 [" in output and "step/s]" in output) == terminal  # the bar, its ETA
    if not terminal:
        assert output.count("\n") == 2 and "\r" not in output


def test_training_prints_one_short_line_per_epoch(tiny_shards, tmp_path, capsys):
    from tests.helpers import tiny_config
    from training.trainer import fit

    fit(tiny_config(tiny_shards, training={"epochs": 2, "verbose": 2}), str(tmp_path / "run"))
    out = capsys.readouterr().out
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(" · make " in line and " · model " in line for line in epochs)
    assert "val_make_top5" not in out and "ms/step" not in out  # not Keras' alphabetical metrics


def test_a_finished_run_says_how_to_start_another(tiny_shards, tmp_path, capsys):
    from tests.helpers import tiny_config
    from training.trainer import fit

    config = tiny_config(tiny_shards, training={"epochs": 1, "verbose": 0})
    fit(config, str(tmp_path / "run"))
    capsys.readouterr()
    fit(config, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "already complete" in out and "another --out" in out and "--overwrite" in out


ENTRY_POINTS = ("training.fit", "tuning.hyperband", "data_prep.build", "data_prep.verify", "data_prep.synthetic",
                "eval.test", "eval.predict", "eval.export", "eval.compare", "eval.curves", "eval.retrieval",
                "eval.app", "docs.render", "benchmarks.bench_build", "benchmarks.bench_training",
                "benchmarks.bench_backends", "benchmarks.bench_predict", "benchmarks.bench_samephoto",
                "benchmarks.bench_app_memory", "benchmarks.bench_ood", "benchmarks.bench_install",
                "benchmarks.demo_run")
BANNERS = ("absl::InitializeLog", "oneDNN", "cuda", "TF-TRT", "Traceback")


def test_every_entry_point_helps_without_markup_or_start_up_banners():
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell: the commands quieten TensorFlow themselves
    finished = {}
    for start in range(0, len(ENTRY_POINTS), 4):  # four at a time: each imports TensorFlow
        running = {module: subprocess.Popen([sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, env=environment)
                   for module in ENTRY_POINTS[start:start + 4]}
        finished.update({module: (process, *process.communicate(timeout=300)) for module, process in running.items()})
    for module, (process, out, err) in finished.items():
        assert process.returncode == 0, f"{module}: {err[-500:]}"
        assert out.startswith(f"usage: python -m {module}"), module
        assert "`" not in out, f"{module} shows markup: {out}"
        assert not any(banner in err for banner in BANNERS), f"{module} printed: {err[-500:]}"
