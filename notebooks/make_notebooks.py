"""Write ``colab_tpu.ipynb`` and ``kaggle_tpu.ipynb`` from one description (``python notebooks/make_notebooks.py``).

The two notebooks differ only in their install, parameter and data cells; everything else is the
same sequence of calls into the package (``notebooks.steps`` chains ``data_prep``, ``training``,
``tuning`` and ``eval``). Edit this file, not the notebooks: a test checks that the committed
notebooks are exactly what this script writes, without outputs.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = ("colab_tpu.ipynb", "kaggle_tpu.ipynb")


def markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text: str, *tags: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)} if tags else {},
            "outputs": [], "source": text.strip("\n")}


INTRO = {
    "colab": """
# Car recognition on a Colab TPU

Make, model, year and body type from a photo — data preparation, training, tuning and evaluation with
this project's package. Choose **Runtime → Change runtime type → TPU** (a v5e chip; Pro+: v6e). On a
TPU the notebook trains with **Keras 3 on JAX** (`keras.distribution`), which is what Colab's TPU
runtime ships — it has no TensorFlow that can drive the TPU; TensorFlow (CPU) still feeds the data.
A GPU or the CPU works too: there the backend is TensorFlow, and the notebook says what it chose.

Edit the **parameters** cell, then *Run all*. **After a disconnect, reconnect and run all again**: the
shards are reused and training resumes after the last completed epoch — as long as `WORK_DIR` is on
Google Drive or a `gs://` bucket (the VM's own disk is wiped). `SMOKE = True` runs everything end to
end on the CPU with a small synthetic dataset, to check the set-up in a few minutes.
""",
    "kaggle": """
# Car recognition on a Kaggle TPU

Make, model, year and body type from a photo — data preparation, training, tuning and evaluation with
this project's package. In the notebook's settings choose **Accelerator → TPU** (a v5e-8: 8 chips,
the global batch follows them) and add the dataset (e.g. *Stanford Car Dataset by classes folder*)
with **Add Input**. On the TPU the notebook trains with **Keras 3 on JAX** (`keras.distribution`),
the stack Kaggle's TPU image ships (JAX with `tensorflow-cpu` for the data pipeline).

Edit the **parameters** cell, then *Run all*. Kaggle keeps `/kaggle/working` only in a saved version:
to survive a lost session put `WORK_DIR` in a `gs://` bucket (Add-ons → Google Cloud Services), or
save a version and add its output as an input next time. **Re-running all cells resumes**: the shards
are reused and training continues after the last completed epoch. `SMOKE = True` runs everything end
to end on the CPU with a small synthetic dataset.
""",
}

PARAMETERS = {
    "colab": '''
# Parameters: the only cell to edit.
SMOKE = False  # True: end to end on the CPU with a small synthetic dataset (a few minutes, no data needed)

REPO_URL = ""  # git URL of this project to clone; "" when PROJECT_DIR already holds it (e.g. copied to Drive)
PROJECT_DIR = "/content/car-recognition"
DATASET = "stanford_cars"  # or "compcars"
DATA_SOURCE = "/content/drive/MyDrive/datasets/stanford_cars"  # the dataset's folder: Drive or gs://bucket/…
WORK_DIR = "/content/drive/MyDrive/car-recognition"  # shards, runs and reports: Drive or gs:// survive a disconnect
BUILD_OPTIONS = {"split": "official", "max_side": 320}  # data_prep.build options (README, Data preparation)
CONFIG = "report000_efficientnetv2_b2.yaml"  # a file in configs/ or a path
OVERRIDES = []  # e.g. ["training.epochs=40", "data.image_size=260"]
RUN_NAME = "report000"
TUNE = False  # run the Hyperband search as well
TUNE_SPACE, TUNE_MAX_EPOCHS, TUNE_FACTOR = "report004", 10, 3
BACKEND = "auto"  # auto: JAX on a TPU (what the platform ships), TensorFlow on a GPU or CPU; or "jax" / "tensorflow"
''',
    "kaggle": '''
# Parameters: the only cell to edit.
SMOKE = False  # True: end to end on the CPU with a small synthetic dataset (a few minutes, no data needed)

REPO_URL = ""  # git URL of this project to clone; "" when PROJECT_DIR already holds it (e.g. a Kaggle dataset)
PROJECT_DIR = "/kaggle/working/car-recognition"
DATASET = "stanford_cars"  # or "compcars"
DATA_SOURCE = "/kaggle/input/stanford-car-dataset-by-classes-folder"  # an input dataset, or gs://bucket/…
WORK_DIR = "/kaggle/working/car-recognition-work"  # shards, runs and reports (gs://… to survive a lost session)
BUILD_OPTIONS = {"split": "official", "max_side": 320}  # data_prep.build options (README, Data preparation)
CONFIG = "optimal.yaml"  # a file in configs/ or a path
OVERRIDES = []  # e.g. ["training.epochs=40"]; report 004's make + model heads exist in Stanford Cars too
RUN_NAME = "optimal_stanford"
TUNE = False  # run the Hyperband search as well
TUNE_SPACE, TUNE_MAX_EPOCHS, TUNE_FACTOR = "report004", 10, 3
BACKEND = "auto"  # auto: JAX on a TPU (what the platform ships), TensorFlow on a GPU or CPU; or "jax" / "tensorflow"
''',
}

SMOKE_SETTINGS = '''
# Smoke mode: the same cells on a CPU, a small synthetic dataset and a tiny model (nothing to download).
import os
import tempfile

if SMOKE:
    WORK_DIR = os.environ.get("CARS_SMOKE_DIR") or tempfile.mkdtemp(prefix="cars_smoke_")
    CONFIG, RUN_NAME, TUNE = "demo.yaml", "smoke", True
    OVERRIDES = ["data.image_size=32", "data.batch_size=8", "data.augment=none", "training.epochs=2",
                 "training.steps_per_epoch=4", "training.verbose=0", "training.strategy=cpu"]
    TUNE_SPACE, TUNE_MAX_EPOCHS, TUNE_FACTOR = "report004", 2, 2
print("smoke mode" if SMOKE else "full run", "- work folder:", WORK_DIR)
'''

INSTALL_NOTE = {
    "colab": """# Install the project's requirements next to the runtime's own packages: its JAX, libtpu and NumPy
# are kept exactly as Colab ships them (reinstalling them breaks the TPU); Colab's TPU runtime has no
# TensorFlow, so a matching tensorflow-cpu is added for the data pipeline (notebooks/install.py).""",
    "kaggle": """# Install the project's requirements next to the image's own packages: its JAX, libtpu, NumPy and
# tensorflow-cpu are kept exactly as Kaggle ships them (reinstalling them breaks the TPU;
# notebooks/install.py pins them while the ranges of requirements-notebook.txt are installed).""",
}

INSTALL = '''
import os
import sys

if not SMOKE:
    if REPO_URL and not os.path.exists(PROJECT_DIR):
        !git clone --depth 1 {REPO_URL} {PROJECT_DIR}
    sys.path.insert(0, PROJECT_DIR)
    from notebooks import install

    install.install(PROJECT_DIR)
'''

PROJECT = '''
# Work from the project's folder (found next to this notebook in smoke mode or a local checkout).
for candidate in (PROJECT_DIR, os.getcwd(), os.path.dirname(os.getcwd())):
    if os.path.exists(os.path.join(candidate, "training", "fit.py")):
        PROJECT_DIR = candidate
        break
else:
    raise FileNotFoundError(f"the project is not in {PROJECT_DIR}: set REPO_URL (to clone it) or PROJECT_DIR")
os.chdir(PROJECT_DIR)
sys.path.insert(0, PROJECT_DIR)

from common import backend  # noqa: E402  (importable once the project is on the path)

backend.choose(BACKEND)  # before Keras is imported: JAX on a TPU unless BACKEND says otherwise
from notebooks import steps as nb  # noqa: E402

print("project:", PROJECT_DIR, "- platform:", nb.platform())
'''

DATA_ACCESS = {
    "colab": '''
# Data access: Google Drive is mounted when a path is on it; gs:// buckets need your Google login.
paths = (DATA_SOURCE, WORK_DIR)
if not SMOKE and nb.platform() == "colab":
    if any(path.startswith("/content/drive") for path in paths):
        from google.colab import drive

        drive.mount("/content/drive")
    if any(path.startswith("gs://") for path in paths):
        from google.colab import auth

        auth.authenticate_user()
''',
    "kaggle": '''
# Data access: input datasets are under /kaggle/input (read-only). For gs:// buckets attach your
# Google Cloud account (Add-ons → Google Cloud Services); the credentials are then set here.
paths = (DATA_SOURCE, WORK_DIR)
if not SMOKE and nb.platform() == "kaggle" and any(path.startswith("gs://") for path in paths):
    from kaggle_secrets import UserSecretsClient

    UserSecretsClient().set_gcloud_credentials()
''',
}

COMMON_CELLS = [
    markdown("## Accelerator\nThe Keras backend, the devices, the distribution and the global batch training "
             "will use, with the reasons."),
    code('distribution = nb.describe_accelerator(CONFIG, OVERRIDES)'),
    markdown("## Shards\nBuilt once into `WORK_DIR`; running the cell again reuses them (or finishes an "
             "interrupted build)."),
    code('''
if SMOKE:  # synthetic photos in Stanford Cars' layout stand in for the dataset
    DATA_SOURCE = nb.synthetic_photos(f"{WORK_DIR}/synthetic_stanford_cars")
    DATASET, BUILD_OPTIONS = "stanford_cars", {"split": "stratified", "workers": 1, "progress": False}
SHARDS_DIR = f"{WORK_DIR}/shards_{DATASET}"
manifest = nb.prepare_shards(DATASET, DATA_SOURCE, SHARDS_DIR, **BUILD_OPTIONS)
'''),
    markdown("## Train\nAfter a disconnect run all cells again: training resumes after the last completed epoch "
             "(checkpoint, history and schedule position are saved every epoch)."),
    code('''
RUN_DIR = f"{WORK_DIR}/runs/{RUN_NAME}"
metrics = nb.train(CONFIG, SHARDS_DIR, RUN_DIR, OVERRIDES)
curves = nb.show_curves(RUN_DIR)
'''),
    markdown("## Tune (optional)\nHyperband over the chosen space; re-running continues the search. "
             "`best.yaml` is a complete config: set `CONFIG` to it to train the winner."),
    code('''
if TUNE:
    best = nb.tune(CONFIG, SHARDS_DIR, f"{WORK_DIR}/tune_{RUN_NAME}", TUNE_SPACE, TUNE_MAX_EPOCHS, TUNE_FACTOR,
                   overrides=OVERRIDES)
    nb.show_images([f"{WORK_DIR}/tune_{RUN_NAME}/search.png"])
    print("best configuration:", best)
'''),
    markdown("## Evaluate\n`eval.test` on the test split: per-head accuracy, top-5, loss, precision / recall / F1, "
             "calibration, hierarchy; the confusion matrices and reliability diagrams are shown below and saved "
             "with `report.md` next to the model."),
    code('''
report = nb.evaluate(f"{RUN_DIR}/model.keras")
'''),
    markdown("""
## Use the model
From a terminal (or with `!` in a cell):

```
python -m eval.predict --model RUN_DIR/model.keras photo.jpg           # top-3 make / model / year / type
KERAS_BACKEND=tensorflow python -m eval.export --model RUN_DIR/model.keras --format tflite   # TensorFlow artefacts
pip install -r requirements-app.txt && python -m eval.app --model RUN_DIR/model.keras --share   # the listing form
```
"""),
]


def notebook(platform: str) -> dict:
    cells = [markdown(INTRO[platform]), code(PARAMETERS[platform], "parameters"), code(SMOKE_SETTINGS),
             markdown("## Set-up"), code(INSTALL_NOTE[platform] + INSTALL), code(PROJECT), code(DATA_ACCESS[platform])]
    cells += copy.deepcopy(COMMON_CELLS)
    return {
        "cells": cells,
        "metadata": {
            "accelerator": "TPU",
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def rendered() -> Dict[str, str]:
    """File name → the notebook's JSON text (what is committed)."""
    texts = {}
    for name in NOTEBOOKS:
        book = notebook(name.split("_")[0])
        for index, cell in enumerate(book["cells"]):
            cell["id"] = f"{name.split('_')[0]}-{index:02d}"
            cell["source"] = _lines(cell["source"])
        texts[name] = json.dumps(book, indent=1, ensure_ascii=False) + "\n"
    return texts


def _lines(text: str) -> List[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def main() -> int:
    for name, text in rendered().items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as handle:
            handle.write(text)
        print("wrote", os.path.join(HERE, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
