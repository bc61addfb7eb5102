"""colab_tpu.ipynb on a stand-in of Colab's TPU runtime (notebooks/platforms.toml: Python 3.12, JAX 0.9.0,
Keras 3.12.0, no TensorFlow), executed top to bottom with papermill on 8 XLA host devices, the project
on "Drive" in a read-only folder: smoke mode on the pristine image (it installs what it needs), then a
full run that fetches its data through kagglehub's cache, then the real photos of ../shared when present.
Before any of it: the model package and a training step work there with TensorFlow absent."""
import json

import pytest

from notebooks import standin
from tests.helpers import training_step_script
from tests.standin_runs import (check_real_photos, check_run, image_environment, place_in_kagglehub_cache, run_python,
                                 shipped, synthetic_photos)

pytestmark = pytest.mark.slow
PLATFORM = "colab"
HANDLE = "jutrera/stanford-car-dataset-by-classes-folder/versions/2"


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    return image_environment(PLATFORM, tmp_path_factory.mktemp("colab") / "env")


def test_models_and_a_training_step_work_without_tensorflow(colab):
    """Colab's runtime before the install has JAX and no TensorFlow: the model package, our losses,
    metrics and optimiser build and train there (backend auto → JAX)."""
    spec, base, _ = colab
    result = run_python(base, training_step_script(), JAX_PLATFORMS="cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["backend"] == "jax" and outcome["reason"] == "no TPU, and TensorFlow is not installed"
    assert not outcome["tensorflow_installed"] and not outcome["tensorflow_imported"]
    assert outcome["loss"] > 0


def test_smoke_mode_installs_what_it_needs_on_the_image(colab, tmp_path):
    spec, base, environment = colab
    outcome = standin.run(PLATFORM, "unused", str(tmp_path), smoke=True, environment=environment)
    check_run(outcome, tmp_path / "smoke" / "work", "smoke", smoke=True)
    added = " ".join(outcome.added)
    assert "tensorflow-cpu" in added and "tensorboard" in added and "keras-tuner" in added
    assert (tmp_path / "smoke" / "work" / "tune_smoke" / "best.yaml").is_file()


def test_a_full_run_fetches_its_data_with_kagglehub_and_trains_on_8_devices(colab, tmp_path):
    """DATA_SOURCE is a kaggle: handle; kagglehub finds it in its cache (the test's synthetic photos),
    as it would after a download."""
    spec, base, environment = colab
    cache = tmp_path / "kagglehub"
    photos = synthetic_photos(tmp_path / "photos")
    placed = place_in_kagglehub_cache(standin.python_of(environment), HANDLE, photos, str(cache))
    outcome = standin.run(PLATFORM, f"kaggle:{HANDLE}", str(tmp_path), environment=environment,
                          extra_environment={"KAGGLEHUB_CACHE": str(cache)})
    printed = check_run(outcome, tmp_path / "full" / "work", "standin")
    assert f"data: {HANDLE} in {placed}" in printed
    assert "platform: colab; Keras 3.12.0" in printed and "JAX 0.9.0" in printed
    assert outcome.read_only or not standin.can_mount_read_only()
    now = standin.installed(standin.python_of(environment))
    assert {name: now.get(name) for name in shipped(base)} == shipped(base)  # after both runs, as shipped


def test_a_full_run_on_the_real_photos(colab, tmp_path):
    check_real_photos(PLATFORM, colab[2], tmp_path)
