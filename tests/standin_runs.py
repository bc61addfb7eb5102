"""What the two platform tests share: the stand-in of a platform image, synthetic photos in Stanford
Cars' Kaggle layout, and the checks every notebook run on a stand-in must pass.

A stand-in is built once per image version and cached (``notebooks.standin``; the first build
downloads the image's packages, about a minute); each test module works on its own copy.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from common.cli import STARTUP_CHATTER
from common.errors import UserError
from data_prep.synthetic import generate
from notebooks import standin
from tests.helpers import REALDATA

DEVICES = [f"TFRT_CPU_{index}" for index in range(standin.DEVICES)]


def image_environment(platform: str, folder: pathlib.Path):
    """(the image's description, its cached environment, a fresh overlay of it in ``folder``); skips
    where the image's Python is not installed or the package index cannot be reached."""
    spec = standin.image(platform)
    if standin.find_python(spec.python) is None:
        pytest.skip(f"Python {spec.python}, the {spec.title}'s, is not installed here")
    try:
        base = standin.base_environment(spec)
    except UserError as error:
        if any(word in str(error) for word in ("Could not fetch", "NewConnectionError", "Name or service")):
            pytest.skip(f"the package index cannot be reached: {error}")
        raise
    return spec, base, standin.fresh_environment(spec, str(folder))


def synthetic_photos(folder: pathlib.Path) -> str:
    """A small synthetic Stanford Cars in Kaggle's class-folder layout (4 makes × 3 models × 14 photos)."""
    generate("stanford_cars", str(folder), "kaggle", makes=4, models_per_make=3, images_per_model=14, seed=0,
             bad_files=False, size=(160, 120))
    return str(folder)


def shipped(base: str) -> dict:
    """The packages the image's environment had when it was built."""
    with open(os.path.join(base, "image.json")) as handle:
        return json.load(handle)["packages"]


def check_run(outcome: standin.Outcome, work: pathlib.Path, run_name: str, smoke: bool = False) -> str:
    """The checks of every run: it finished, the log shows the devices, the evaluation report exists,
    the image's packages and the read-only project are unchanged, no start-up banner or TensorBoard
    error was printed. Returns what the cells printed."""
    assert outcome.returncode == 0, outcome.log[-6000:]
    printed = outcome.outputs()
    assert "packages this runtime had are unchanged" in printed  # the set-up's own check
    if smoke:
        assert "smoke mode - work folder: " in printed and "accelerator: cpu, 1 replica(s)" in printed
    else:
        assert f"accelerator: data_parallel, {standin.DEVICES} replica(s)" in printed, printed[-3000:]
        assert "devices: " + ", ".join(DEVICES) in printed
        assert f"global batch: {2 * standin.DEVICES} (2 per replica)" in printed
        # the build's progress: one updating bar (a widget: ipywidgets is in the image), not a line per update
        assert printed.count("writing shards:") == 1
        assert "application/vnd.jupyter.widget-view+json" in pathlib.Path(outcome.executed).read_text()
    report = work / "runs" / run_name / "eval_model_test"
    assert (report / "report.md").is_file() and (report / "figures" / "confusion_model.png").is_file()
    assert set(json.loads((report / "metrics.json").read_text())["heads"]) == {"make", "model", "year", "type"}
    assert outcome.changed == [], f"the notebook changed the image's packages: {outcome.changed}"
    assert outcome.project_unchanged, "the run wrote into the project's (read-only) folder"
    for text in (printed, outcome.log):
        for banner in STARTUP_CHATTER + ("TBNotInstalledError", "Traceback"):
            assert banner not in text, text[max(0, text.find(banner) - 2000):text.find(banner) + 800]
    return printed


def check_real_photos(platform: str, environment: str, tmp_path: pathlib.Path) -> None:
    """A full run on the 825 real photos of ../shared (20 classes, Kaggle's layout); skipped without them."""
    if not (REALDATA / "photos" / "labels.csv").is_file():
        pytest.skip("../shared/realdata/stanford_cars/photos is not available")
    outcome = standin.run(platform, str(REALDATA / "photos"), str(tmp_path), environment=environment)
    printed = check_run(outcome, tmp_path / "full" / "work", "standin")
    assert "classes: make 14, model 20" in printed


def run_python(environment: str, code: str, **environment_variables) -> subprocess.CompletedProcess:
    variables = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **environment_variables}
    return subprocess.run([standin.python_of(environment), "-c", code], capture_output=True, text=True,
                          env=variables, timeout=600)


# kagglehub's cache, filled as a finished download leaves it (marker file included); works with the
# kagglehub of either environment (0.3 and 1.x keep the same layout)
PLACE_IN_KAGGLEHUB_CACHE = """
import os, pathlib, shutil, sys
from kagglehub import cache
from kagglehub.handle import parse_dataset_handle
handle = parse_dataset_handle(sys.argv[1])
shutil.copytree(sys.argv[2], cache.get_cached_path(handle))
marker = cache._get_completion_marker_filepath(handle)
os.makedirs(os.path.dirname(marker), exist_ok=True)
pathlib.Path(marker).touch()
print(cache.get_cached_path(handle))
"""


def place_in_kagglehub_cache(python: str, handle: str, folder: str, cache: str) -> str:
    """Put ``folder`` into kagglehub's cache at ``cache`` as the download of ``handle``; returns its path."""
    variables = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "KAGGLEHUB_CACHE": cache}
    placed = subprocess.run([python, "-c", PLACE_IN_KAGGLEHUB_CACHE, handle, folder], capture_output=True, text=True,
                            env=variables, timeout=300)
    assert placed.returncode == 0, placed.stderr[-2000:]
    return placed.stdout.strip()
