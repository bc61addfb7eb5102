"""kaggle_tpu.ipynb on a stand-in of Kaggle's TPU image (notebooks/platforms.toml: Python 3.12, JAX 0.7.2,
tensorflow-cpu 2.20.0, Keras 3.11.3), executed top to bottom with papermill on 8 XLA host devices: the
project packed by `python -m notebooks.package` and attached as a read-only dataset, found by the
notebook's default PROJECT_DIR pattern; the image's packages stay exactly as shipped. (Smoke mode on a
platform image is run on Colab's, the one that lacks more: tests/test_platform_colab.py.)"""
import pytest

from notebooks import standin
from tests.standin_runs import check_real_photos, check_run, image_environment, shipped, synthetic_photos

pytestmark = pytest.mark.slow
PLATFORM = "kaggle"


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    return image_environment(PLATFORM, tmp_path_factory.mktemp("kaggle") / "env")


def test_a_full_run_finds_the_attached_project_and_trains_on_8_devices(kaggle, tmp_path):
    spec, base, environment = kaggle
    photos = synthetic_photos(tmp_path / "stanford-car-dataset-by-classes-folder")
    outcome = standin.run(PLATFORM, photos, str(tmp_path), environment=environment)
    printed = check_run(outcome, tmp_path / "full" / "work", "standin")
    assert f"project: {tmp_path}/full/input/car-recognition/car-recognition - platform: kaggle" in printed
    assert "platform: kaggle; Keras 3.11.3, TensorFlow 2.20.0, JAX 0.7.2" in printed
    assert "tensorflow-cpu" not in " ".join(outcome.added)  # the image's own TensorFlow serves tf.data
    now = standin.installed(standin.python_of(environment))
    assert {name: now.get(name) for name in shipped(base)} == shipped(base)


def test_a_full_run_on_the_real_photos(kaggle, tmp_path):
    check_real_photos(PLATFORM, kaggle[2], tmp_path)
