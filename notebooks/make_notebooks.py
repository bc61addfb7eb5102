"""Write ``colab_tpu.ipynb`` and ``kaggle_tpu.ipynb`` from one description (``python notebooks/make_notebooks.py``).

The two notebooks differ only in their introduction, parameters and data cells; everything else is
the same sequence of calls into the package (``notebooks.steps`` chains ``data_prep``, ``training``,
``tuning`` and ``eval``). Edit this file, not the notebooks: a test checks that the committed
notebooks are exactly what this script writes, without outputs.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
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
this project's package. On a TPU the notebook trains with **Keras 3 on JAX** (`keras.distribution`),
which is what Colab's TPU runtime ships (it has no TensorFlow that can drive the TPU; a CPU build of
TensorFlow is added to feed the data). A GPU or the CPU works too: there the backend is TensorFlow.

**Three steps, then *Runtime → Run all*:**
1. **The project**: copy this project's folder to Google Drive as `MyDrive/car-recognition` (or set
   `REPO_URL` to a git URL of it, which is cloned into `PROJECT_DIR`).
2. **The data**: nothing to do for Stanford Cars — the data cell downloads Kaggle's copy with
   `kagglehub` (about 1.9 GB; if Kaggle asks for a login, add `KAGGLE_USERNAME` and `KAGGLE_KEY` in
   Colab's *Secrets*). Or put the dataset on Drive and set `DATA_SOURCE` to its folder. CompCars: see
   *Data* below.
3. **Runtime → Change runtime type → TPU** (a v5e chip; Pro+: v6e).

**After a disconnect, reconnect and run all again**: the shards are reused and training resumes after
the last completed epoch — as long as `WORK_DIR` is on Google Drive or a `gs://` bucket (the VM's own
disk is wiped). `SMOKE = True` runs everything end to end on the CPU with a small synthetic dataset, to
check the set-up in a few minutes.
""",
    "kaggle": """
# Car recognition on a Kaggle TPU

Make, model, year and body type from a photo — data preparation, training, tuning and evaluation with
this project's package. On the TPU the notebook trains with **Keras 3 on JAX** (`keras.distribution`),
the stack Kaggle's TPU image ships (JAX with `tensorflow-cpu` for the data pipeline).

**Three steps, then *Run all*:**
1. **The project**: where you have it, run `python -m notebooks.package --owner YOUR_KAGGLE_NAME` and
   upload the folder it writes as a private dataset (`kaggle datasets create -p dist/kaggle-dataset
   --dir-mode zip`, or *Datasets → New Dataset* with `dist/kaggle-dataset/car-recognition`); then here
   **Add Input** → that dataset. The set-up cell finds it under `/kaggle/input`.
2. **The data**: **Add Input** → *Stanford Car Dataset by classes folder* (jutrera) — or nothing: the
   data cell fetches it with `kagglehub`. CompCars: see *Data* below.
3. **Settings → Accelerator → TPU** (a v5e-8: 8 chips, the global batch follows them) and
   **Settings → Internet → on** (the set-up installs a few packages).

Kaggle keeps `/kaggle/working` only in a saved version: to survive a lost session put `WORK_DIR` in a
`gs://` bucket (Add-ons → Google Cloud Services), or save a version and add its output as an input next
time. **Re-running all cells resumes**: the shards are reused and training continues after the last
completed epoch. `SMOKE = True` runs everything end to end on the CPU with a small synthetic dataset.
""",
}

PARAMETERS = {
    "colab": """
# Parameters: the only cell to edit.
SMOKE = False  # True: end to end on the CPU with a small synthetic dataset (a few minutes, no data needed)

REPO_URL = ""  # git URL of this project, cloned into PROJECT_DIR; "" when PROJECT_DIR already holds it
PROJECT_DIR = "/content/drive/MyDrive/car-recognition"  # the project's folder (Drive is mounted when needed)
DATASET = "stanford_cars"  # or "compcars"
DATA_SOURCE = "kaggle:jutrera/stanford-car-dataset-by-classes-folder"  # kagglehub handle, Drive folder or gs://…
WORK_DIR = "/content/drive/MyDrive/car-recognition-work"  # shards, runs, reports: Drive or gs:// survive a disconnect
BUILD_OPTIONS = {"split": "official", "max_side": 320}  # data_prep.build options (docs/data.md)
CONFIG = "report000_efficientnetv2_b2.yaml"  # a file in configs/ or a path
# OVERRIDES: --set style, e.g. ["training.epochs=40", "data.image_size=260"]
OVERRIDES = []
RUN_NAME = "report000"
TUNE = False  # run the Hyperband search as well
TUNE_SPACE = "report004"  # a search space of tuning/spaces/ (or a path)
TUNE_MAX_EPOCHS = 10  # Hyperband: the most epochs a trial trains
TUNE_FACTOR = 3  # Hyperband: how many trials each round keeps one of
BACKEND = "auto"  # auto: JAX on a TPU (what the platform ships), TensorFlow on a GPU or CPU; or "jax" / "tensorflow"
""",
    "kaggle": """
# Parameters: the only cell to edit.
SMOKE = False  # True: end to end on the CPU with a small synthetic dataset (a few minutes, no data needed)

REPO_URL = ""  # git URL of this project, cloned into PROJECT_DIR; "" when it is an attached dataset
PROJECT_DIR = "/kaggle/input/*"  # searched: the attached dataset holding the project (or give its folder)
DATASET = "stanford_cars"  # or "compcars"
DATA_SOURCE = "kaggle:jutrera/stanford-car-dataset-by-classes-folder"  # attached input used as it is; or a folder
WORK_DIR = "/kaggle/working/car-recognition-work"  # shards, runs and reports (gs://… to survive a lost session)
BUILD_OPTIONS = {"split": "official", "max_side": 320}  # data_prep.build options (docs/data.md)
CONFIG = "optimal.yaml"  # a file in configs/ or a path
# OVERRIDES: --set style, e.g. ["training.epochs=40"]; report 004's make + model heads exist in Stanford Cars too
OVERRIDES = []
RUN_NAME = "optimal_stanford"
TUNE = False  # run the Hyperband search as well
TUNE_SPACE = "report004"  # a search space of tuning/spaces/ (or a path)
TUNE_MAX_EPOCHS = 10  # Hyperband: the most epochs a trial trains
TUNE_FACTOR = 3  # Hyperband: how many trials each round keeps one of
BACKEND = "auto"  # auto: JAX on a TPU (what the platform ships), TensorFlow on a GPU or CPU; or "jax" / "tensorflow"
""",
}

SMOKE_SETTINGS = """
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
"""

WHERE_TO_GET_IT = {
    "colab": "copy the project's folder to Google Drive as MyDrive/car-recognition and set PROJECT_DIR to it, "
             "or set REPO_URL to a git URL of it",
    "kaggle": "run `python -m notebooks.package` where you have the project, upload the folder it writes as a "
              "Kaggle dataset and attach it here with Add Input (or set REPO_URL to a git URL of it)",
}

SETUP = """
# Find the project (PROJECT_DIR, a dataset attached under it, a clone of REPO_URL, or the checkout this
# notebook sits in), then add what it needs next to the runtime's packages: every package the runtime
# has stays at its version (reinstalling JAX, libtpu or NumPy breaks the TPU), only what is missing is
# added (notebooks/install.py) — on Colab's TPU runtime that includes a CPU build of TensorFlow.
import glob
import subprocess
import sys


class SetupError(Exception):  # shown as one line; Run all stops here
    def _render_traceback_(self):
        return [f"error: {{self}}"]


on_colab = bool(os.environ.get("COLAB_RELEASE_TAG"))
if on_colab and PROJECT_DIR.startswith("/content/drive/") and not os.path.isdir("/content/drive/MyDrive"):
    from google.colab import drive

    drive.mount("/content/drive")
if REPO_URL and not glob.glob(PROJECT_DIR):
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, PROJECT_DIR], check=True)
places = [PROJECT_DIR, f"{{PROJECT_DIR}}/*", f"{{PROJECT_DIR}}/*/*", os.getcwd(), os.path.dirname(os.getcwd())]
found = [path for place in places for path in sorted(glob.glob(place))
         if os.path.isfile(os.path.join(path, "notebooks", "install.py"))]
if not found:
    raise SetupError(f"the project is not in {{PROJECT_DIR}}: "
                     {where})
PROJECT_DIR = found[0]
sys.path.insert(0, PROJECT_DIR)
from notebooks import install  # noqa: E402  (importable only now)

added = install.install(PROJECT_DIR)
"""

PROJECT = """
from common import backend  # noqa: E402

backend.choose(BACKEND)  # before Keras is imported: JAX on a TPU unless BACKEND says otherwise
from notebooks import steps as nb  # noqa: E402

print("project:", PROJECT_DIR, "- platform:", nb.platform())
"""

DATA = {
    "colab": """
## Data
`DATA_SOURCE` is a `kaggle:OWNER/DATASET` handle, downloaded with `kagglehub` into its cache on this VM
(a new VM downloads again: about a minute for Stanford Cars; public datasets need no login), or a folder:
on Google Drive (mounted here when a path needs it; it survives the VM) or in a `gs://` bucket (your
Google login is asked for).
""",
    "kaggle": """
## Data
`DATA_SOURCE` is an attached input under `/kaggle/input` (read-only), or a `kaggle:OWNER/DATASET`
handle: `kagglehub` uses the attached copy, or attaches it. For `gs://` buckets attach your Google Cloud
account (Add-ons → Google Cloud Services); the credentials are then set here.
""",
}

COMPCARS = """
**CompCars** comes from its authors, not from a platform: ask for it on the
[CompCars page](http://mmlab.ie.cuhk.edu.hk/datasets/comp_cars/) (a signed agreement, non-commercial
research; the archive is split and password-protected), extract it, {where}; then set
`DATASET = "compcars"` and `DATA_SOURCE` to the folder holding `data/` (or `image/`, `label/`, `misc/`,
`train_test_split/`). Re-uploads on Kaggle (e.g. `kaggle:renancostaalencar/compcars`) load the same way;
check their licence first.
"""

WHERE_COMPCARS_GOES = {"colab": "put the folder on Google Drive",
                       "kaggle": "upload the folder as a private Kaggle dataset and attach it with Add Input"}

DATA_ACCESS = {
    "colab": """
if not SMOKE:
    paths = (DATA_SOURCE, WORK_DIR)
    if nb.platform() == "colab" and any(path.startswith("/content/drive/") for path in paths):
        from google.colab import drive

        drive.mount("/content/drive")
    if nb.platform() == "colab" and any(path.startswith("gs://") for path in paths):
        from google.colab import auth

        auth.authenticate_user()
    DATA_SOURCE = nb.dataset_folder(DATA_SOURCE)
""",
    "kaggle": """
if not SMOKE:
    if nb.platform() == "kaggle" and any(path.startswith("gs://") for path in (DATA_SOURCE, WORK_DIR)):
        from kaggle_secrets import UserSecretsClient

        UserSecretsClient().set_gcloud_credentials()
    DATA_SOURCE = nb.dataset_folder(DATA_SOURCE)
""",
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
             "(checkpoint, history and schedule position are saved every epoch). On JAX the augmentation stays "
             "in tf.data (`data.augment_on: host`): Keras preprocessing layers inside the model under JAX's "
             "`DataParallel` were reported to take a TPU run from 10 minutes to 2.5 hours "
             "([keras-team/keras#23229](https://github.com/keras-team/keras/issues/23229)), and that has not been "
             "measured on a TPU here yet."),
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


def string_lines(text: str, indent: int, width: int = 96) -> str:
    """``text`` as adjacent string literals, one per line, for a generated cell."""
    return ("\n" + " " * indent).join(json.dumps(line, ensure_ascii=False) for line in
                                      textwrap.wrap(text, width, drop_whitespace=False))


def notebook(platform: str) -> dict:
    data = DATA[platform] + COMPCARS.format(where=WHERE_COMPCARS_GOES[platform])
    setup = SETUP.format(where=string_lines(WHERE_TO_GET_IT[platform], indent=21))
    cells = [markdown(INTRO[platform]), code(PARAMETERS[platform], "parameters"), code(SMOKE_SETTINGS),
             markdown("## Set-up"), code(setup), code(PROJECT),
             markdown(data), code(DATA_ACCESS[platform])]
    return {
        "cells": cells + [dict(cell) for cell in COMMON_CELLS],
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
