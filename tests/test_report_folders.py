"""Where eval commands write their reports: read-only model folders, --out refusals, rewrites."""
import os
import json

import pytest


from common.cli import run_main
from tests.helpers import manifest_of, read_records






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
