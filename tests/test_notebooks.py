"""The Colab and Kaggle notebooks: generated from one description, committed without outputs, and
executed end to end in smoke mode (CPU, synthetic data) with nbclient — any cell error fails."""
import json
import os
import sys

import pytest

from tests.helpers import REPO

NOTEBOOKS = ("colab_tpu.ipynb", "kaggle_tpu.ipynb")
FOLDER = os.path.join(REPO, "notebooks")


def load_generator():
    sys.path.insert(0, FOLDER)
    try:
        import make_notebooks
    finally:
        sys.path.remove(FOLDER)
    return make_notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_generated_and_stripped(name):
    with open(os.path.join(FOLDER, name), encoding="utf-8") as handle:
        text = handle.read()
    assert text == load_generator().rendered()[name], "run: python notebooks/make_notebooks.py"
    book = json.loads(text)
    code = [cell for cell in book["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    parameters = [cell for cell in code if "parameters" in cell["metadata"].get("tags", [])]
    assert len(parameters) == 1 and code[0] is parameters[0], "one parameters cell, the first code cell"
    assert "SMOKE = False" in "".join(parameters[0]["source"])
    # no pipeline logic in the notebook: every step is a call into the package
    source = "".join("".join(cell["source"]) for cell in code)
    for step in ("nb.describe_accelerator(", "nb.prepare_shards(", "nb.train(", "nb.tune(", "nb.evaluate("):
        assert step in source
    for forbidden in ("tf.data", "keras.", "model.fit", "TFRecord"):
        assert forbidden not in source


def smoke(name: str, work) -> "object":
    """The notebook with ``SMOKE = True`` injected after its parameters cell (as papermill does)."""
    import nbformat

    book = nbformat.read(os.path.join(FOLDER, name), as_version=4)
    index = next(i for i, cell in enumerate(book.cells) if "parameters" in cell.metadata.get("tags", []))
    book.cells.insert(index + 1, nbformat.v4.new_code_cell("SMOKE = True  # injected by the test"))
    return book


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook_smoke")


KERNEL = "cars-test-python"


@pytest.fixture
def this_python(tmp_path, monkeypatch):
    """A kernel spec running this interpreter (a machine's own "python3" spec may point elsewhere)."""
    folder = tmp_path / "jupyter" / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (tests)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_end_to_end_in_smoke_mode(name, smoke_dir, this_python, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient

    # both notebooks share one work folder: the second reuses the first one's synthetic data and shards
    monkeypatch.setenv("CARS_SMOKE_DIR", str(smoke_dir))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    book = smoke(name, smoke_dir)
    NotebookClient(book, timeout=300, kernel_name=this_python, resources={"metadata": {"path": FOLDER}}).execute()
    outputs = {index: "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")
               for index, cell in enumerate(book.cells) if cell.cell_type == "code"}
    printed = "\n".join(outputs.values())
    assert "smoke mode - work folder: " + str(smoke_dir) in printed
    assert "backend: tensorflow" in printed and "accelerator: cpu, 1 replica(s)" in printed
    assert "global batch: 8 (8 per replica)" in printed and "devices: " in printed
    assert "images: train" in printed and "classes: make 4, model 12" in printed
    assert (smoke_dir / "runs" / "smoke" / "model.keras").exists()
    assert (smoke_dir / "tune_smoke" / "best.yaml").exists()
    report = smoke_dir / "runs" / "smoke" / "eval_model_test"
    assert (report / "report.md").exists() and (report / "figures" / "confusion_model.png").exists()
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["heads"]) == {"make", "model", "year", "type"}
    # the figures are shown inline: PNG outputs in the evaluation cell
    images = [out for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) >= 8 + 4  # 4 heads × (confusion, reliability) + 4 training curves


def test_notebook_helpers_detect_the_platform_and_explain_mistakes(tmp_path, monkeypatch):
    from notebooks import steps as nb
    from common.errors import UserError

    for name in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE"):
        monkeypatch.delenv(name, raising=False)
    assert nb.platform() == "local"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert nb.platform() == "kaggle"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-2026")
    assert nb.platform() == "colab"

    assert nb.project_root(os.path.join(REPO, "notebooks")) == str(REPO)
    with pytest.raises(UserError, match="looked for training/fit.py"):
        nb.project_root(str(tmp_path))
    with pytest.raises(UserError, match=r"unknown option\(s\) max_sides; expected some of .*max_side"):
        nb.prepare_shards("stanford_cars", str(tmp_path), str(tmp_path / "shards"), max_sides=320)
    with pytest.raises(UserError, match=r"max_side \(--max-side\): expected a whole number or None \(received '320'"):
        nb.prepare_shards("stanford_cars", str(tmp_path), str(tmp_path / "shards"), max_side="320")
    assert not (tmp_path / "shards").exists()
    for call, message in ((lambda: nb.evaluate("m.keras", splitt="val"),
                           "nb.evaluate: got an unexpected keyword argument 'splitt' (it takes model, data, split"),
                          (lambda: nb.evaluate("m.keras", batch_size="32"),
                           "nb.evaluate: batch_size expects a whole number (received '32')"),
                          (lambda: nb.train("demo.yaml", "s", "r", overrides="training.epochs=1"),
                           "nb.train: overrides expects a list of text (received 'training.epochs=1')"),
                          (lambda: nb.tune("demo.yaml", "s", "o", max_epochs="2"),
                           "nb.tune: max_epochs expects a whole number (received '2')")):
        with pytest.raises(UserError) as raised:
            call()
        assert str(raised.value).startswith(message), raised.value
    with pytest.raises(UserError, match="no figures/ folder"):
        nb.report_figures(str(tmp_path))


@pytest.mark.slow
def test_a_users_mistake_in_a_notebook_is_one_line_and_stops_the_run(this_python):
    pytest.importorskip("nbclient")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom notebooks import steps as nb"),
        nbformat.v4.new_code_cell("nb.prepare_shards('stanford_cars', '/nowhere', '/nowhere/shards', max_sides=320)"),
        nbformat.v4.new_code_cell("print('not reached')"),
    ])
    with pytest.raises(CellExecutionError):
        NotebookClient(book, timeout=120, kernel_name=this_python).execute()
    outputs = book.cells[1].outputs
    assert len(outputs) == 1 and outputs[0]["name"] == "stderr"
    assert outputs[0]["text"].startswith("error: prepare_shards: unknown option(s) max_sides; expected some of")
    assert "Traceback" not in str(outputs) and book.cells[2].outputs == []


class Distribution:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


def test_the_install_pins_every_package_of_the_image_and_adds_tensorflow_only_where_missing(monkeypatch):
    """Constraints come from the whole environment, not a list of names: protobuf, h5py and ml_dtypes
    are what tensorflow-cpu 2.21 would have moved on Colab. A name installed twice counts as Python
    imports it; a version pip cannot read is left out rather than breaking the install."""
    import importlib.metadata

    from notebooks import install

    image = [Distribution("jax", "0.9.0"), Distribution("Keras", "3.12.0"), Distribution("protobuf", "5.29.5"),
             Distribution("h5py", "3.15.1"), Distribution("ml_dtypes", "0.5.4"),
             Distribution("libtpu_nightly", "0.1.dev20240403+default"), Distribution("odd", "not a version"),
             Distribution("jax", "0.4.0")]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: image)
    packages = install.installed_packages()
    assert packages["jax"] == "0.9.0" and packages["ml-dtypes"] == "0.5.4" and packages["keras"] == "3.12.0"
    assert install.constraints(packages) == ["h5py==3.15.1", "jax==0.9.0", "keras==3.12.0",
                                             "libtpu-nightly==0.1.dev20240403+default", "ml-dtypes==0.5.4",
                                             "protobuf==5.29.5"]
    arguments = install.pip_arguments(str(REPO), "image.txt", packages)
    assert arguments == ["-r", str(REPO / "requirements-notebook.txt"), "-c", "image.txt", *install.TENSORFLOW]
    packages["tensorflow-cpu"] = "2.20.0"  # Kaggle's TPU image
    assert install.extra_requirements(packages) == []
    requirements = (REPO / "requirements-notebook.txt").read_text().lower()
    for package in ("jax", "libtpu", "numpy", "tensorflow"):  # never reinstalled by the notebook requirements
        assert not any(line.startswith(package) for line in requirements.splitlines())


def pip_says(*arguments):
    from notebooks import install

    result = install.run_pip(list(arguments) + ["--dry-run", "--only-binary=:all:"])
    if "Could not fetch" in result.stderr or "NewConnectionError" in result.stderr:
        pytest.skip("the package index cannot be reached")
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_requirement_that_would_move_an_image_package_stops_the_install_with_one_sentence(tmp_path):
    """pip's own conflict reports (a dependency of an added package, and a requirement of ours)."""
    from notebooks import install

    (tmp_path / "image.txt").write_text("protobuf==5.29.5\nkeras==3.12.0\n")
    image = {"protobuf": "5.29.5", "keras": "3.12.0"}
    told = install.explain(pip_says("-c", str(tmp_path / "image.txt"), "tensorflow-cpu==2.21.0"), image)
    assert told.startswith("the install stops: tensorflow-cpu 2.21.0 needs protobuf<8.0.0 and >=6.31.1, but this "
                           "image ships protobuf 5.29.5, which the notebook does not change")
    told = install.explain(pip_says("-c", str(tmp_path / "image.txt"), "keras>=3.13"), image)
    assert told.startswith("the install stops: requirements-notebook.txt needs keras>=3.13, but this image ships "
                           "keras 3.12.0")
    assert "\n" not in told
    assert install.explain("ERROR: Could not find a version that satisfies the requirement x\n", image) == (
        "the install failed (ERROR: Could not find a version that satisfies the requirement x); without internet "
        "access pip cannot fetch anything (Kaggle: Settings → Internet on)")
    assert install.InstallError(told)._render_traceback_() == [f"error: {told}"]  # one line in IPython


def image_pins():
    from notebooks import standin

    return {name: list(spec.packages) for name, spec in standin.images().items()}


PYTHONS = ("3.11", "3.12")
REQUIREMENTS_TPU = [str(REPO / "requirements-tpu.txt")]


@pytest.fixture(scope="module")
def resolved():
    """Every (image, Python) resolution next to the image's packages, and requirements-tpu.txt's, run
    side by side (each mostly waits on the index)."""
    import concurrent.futures

    from notebooks import install

    with concurrent.futures.ThreadPoolExecutor(2 * len(PYTHONS) + 2) as pool:
        futures = {(platform, python): pool.submit(install.check, python, pins)
                   for platform, pins in image_pins().items() for python in PYTHONS}
        futures.update({("tpu", python): pool.submit(resolve_tpu_requirements, python) for python in PYTHONS})
        return {key: future.result() for key, future in futures.items()}


def resolve_tpu_requirements(python_version):
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:",
                               "--python-version", python_version, "--target", folder, "-r", REQUIREMENTS_TPU[0]],
                              capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("python_version", PYTHONS)
@pytest.mark.parametrize("platform", ["colab", "kaggle", "tpu"])
def test_the_requirements_resolve_next_to_each_platform(resolved, python_version, platform):
    """pip resolves requirements-notebook.txt (binary wheels only) for each Python next to each TPU
    image's own packages (notebooks/platforms.toml), and requirements-tpu.txt with tensorflow-tpu
    2.19.1, without installing anything (needs the package index; skipped without)."""
    result = resolved[platform, python_version]
    if result.returncode and ("Could not fetch" in result.stderr or "NewConnectionError" in result.stderr):
        pytest.skip("the package index cannot be reached")
    assert result.returncode == 0, result.stderr[-2000:]


def test_requirements_tpu_names_the_tensorflow_tpu_build_that_works():
    text = (REPO / "requirements-tpu.txt").read_text()
    assert "\ntensorflow-tpu==2.19.1\n" in text and "libtpu 0.0.10" in text and "2.20.0" in text
    assert "--find-links" not in text  # both are on PyPI; an unreachable index stalled pip for minutes


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_reads_every_parameter(name):
    """papermill lists every parameter of the parameters cell (a line it cannot parse is skipped with a
    warning, and injecting that name then warns "unknown parameter")."""
    papermill = pytest.importorskip("papermill.translators")
    import nbformat

    book = nbformat.read(os.path.join(FOLDER, name), as_version=4)
    cell = next(cell for cell in book.cells if "parameters" in cell.metadata.get("tags", []))
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if line and not line.startswith("#")]
    assert [parameter.name for parameter in papermill.PythonTranslator.inspect(cell)] == assigned


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_notebook_without_its_project_says_what_to_do_in_one_line(name, this_python, tmp_path):
    pytest.importorskip("nbclient")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = nbformat.read(os.path.join(FOLDER, name), as_version=4)
    setup = next(index for index, cell in enumerate(book.cells) if "def _render_traceback_" in cell.source)
    (tmp_path / "empty").mkdir()
    book.cells = book.cells[:setup] + [book.cells[setup], nbformat.v4.new_code_cell("print('not reached')")]
    book.cells.insert(2, nbformat.v4.new_code_cell(f"PROJECT_DIR = {str(tmp_path / 'empty')!r}"))
    with pytest.raises(CellExecutionError):
        NotebookClient(book, timeout=120, kernel_name=this_python,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    error = [output for output in book.cells[-2].outputs if output.output_type == "error"]
    where = {"colab": "copy the project's folder to Google Drive", "kaggle": "run `python -m notebooks.package`"}
    assert len(error) == 1 and len(error[0].traceback) == 1
    assert error[0].traceback[0].startswith(f"error: the project is not in {tmp_path / 'empty'}: "
                                            + where[name.split("_")[0]])
    assert book.cells[-1].outputs == []


def test_package_writes_a_kaggle_dataset_and_replaces_only_its_own(tmp_path, monkeypatch, capsys):
    from notebooks import package

    out = tmp_path / "dataset"
    assert package.main(["--out", str(out), "--owner", "alice"]) == 0
    metadata = json.loads((out / "dataset-metadata.json").read_text())
    assert metadata["id"] == "alice/car-recognition" and 6 <= len(metadata["title"]) <= 50
    root = out / "car-recognition"
    assert (root / "notebooks" / "install.py").is_file() and (root / "training" / "fit.py").is_file()
    assert (root / "requirements-notebook.txt").is_file() and (root / "configs" / "demo.yaml").is_file()
    assert not (root / ".venv").exists() and not list(root.rglob("__pycache__")) and not (root / ".git").exists()
    assert f"kaggle datasets create -p {out} --dir-mode zip" in capsys.readouterr().out
    (root / "stale.py").write_text("from an earlier package")
    assert package.main(["--out", str(out), "--owner", "alice", "--slug", "cars-code"]) == 0
    assert not (root / "stale.py").exists()
    assert json.loads((out / "dataset-metadata.json").read_text())["id"] == "alice/cars-code"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert package.main(["--out", str(mine), "--owner", "alice"]) == 2
    assert (mine / "notes.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert "holds other files (notes.txt); give an empty or new folder" in capsys.readouterr().err
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no_kaggle"))
    assert package.main(["--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.startswith("error: no Kaggle user name: pass --owner")
    (tmp_path / "no_kaggle").mkdir()
    (tmp_path / "no_kaggle" / "kaggle.json").write_text('{"username": "bob", "key": "x"}')
    assert package.kaggle_owner() == "bob"


def test_data_sources_folders_as_they_are_kaggle_handles_through_kagglehub(tmp_path, monkeypatch, capsys):
    import types

    from common.errors import UserError
    from notebooks import steps as nb

    assert nb.dataset_folder(str(tmp_path)) == str(tmp_path)
    with pytest.raises(UserError, match="DATA_SOURCE: .*missing does not exist"):
        nb.dataset_folder(str(tmp_path / "missing"))
    calls = []
    fake = types.SimpleNamespace(dataset_download=lambda handle: calls.append(handle) or str(tmp_path))
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    assert nb.dataset_folder("kaggle:jutrera/stanford-car-dataset-by-classes-folder") == str(tmp_path)
    assert calls == ["jutrera/stanford-car-dataset-by-classes-folder"]

    monkeypatch.setattr(nb, "KAGGLE_INPUT", str(tmp_path / "input"))  # attached on Kaggle: used as it is
    (tmp_path / "input" / "stanford-car-dataset-by-classes-folder").mkdir(parents=True)
    assert nb.dataset_folder("kaggle:jutrera/stanford-car-dataset-by-classes-folder") == str(
        tmp_path / "input" / "stanford-car-dataset-by-classes-folder")
    assert len(calls) == 1

    def refused(handle):
        raise RuntimeError("403 Client Error: Forbidden")

    fake.dataset_download = refused
    with pytest.raises(UserError, match=r"could not fetch the Kaggle dataset 'a/b' \(RuntimeError: 403.*KAGGLE_KEY"):
        nb.dataset_folder("kaggle:a/b")


def test_a_kaggle_handle_is_fetched_by_the_real_kagglehub_from_its_cache(tmp_path, monkeypatch):
    """The real download code, given a local folder: a versioned handle whose files kagglehub's cache holds."""
    pytest.importorskip("kagglehub")
    from notebooks import steps as nb
    from tests.standin_runs import place_in_kagglehub_cache

    handle = "jutrera/stanford-car-dataset-by-classes-folder/versions/2"
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "names.csv").write_text("AM General Hummer SUV 2000\n")
    placed = place_in_kagglehub_cache(sys.executable, handle, str(tmp_path / "photos"), str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    assert nb.dataset_folder(f"kaggle:{handle}") == placed and os.path.isfile(os.path.join(placed, "names.csv"))


def test_on_jax_the_notebooks_keep_augmentation_in_tf_data(monkeypatch, capsys):
    from notebooks import steps as nb

    device = ["data.augment_on=device"]
    assert nb.host_augmentation_on_jax("demo.yaml", device) == device  # TensorFlow: as configured
    monkeypatch.setattr(nb.keras.config, "backend", lambda: "jax")
    assert nb.host_augmentation_on_jax("demo.yaml", device) == device + ["data.augment_on=host"]
    assert "keras-team/keras/issues/23229" in capsys.readouterr().out
    assert nb.host_augmentation_on_jax("demo.yaml", []) == []  # already in tf.data
    assert nb.host_augmentation_on_jax("demo.yaml", device + ["data.augment=none"]) == device + ["data.augment=none"]


def test_progress_bars_update_in_place_in_a_notebook_and_rarely_in_a_log(monkeypatch):
    import io

    from common import progress

    log = io.StringIO()
    bar = progress.bar(range(3), file=log, desc="writing shards")
    assert bar.mininterval == progress.LOG_INTERVAL_S and sum(1 for _ in bar) == 3
    assert not progress.in_notebook()  # pytest is no Jupyter kernel
    made = []
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(progress.tqdm.auto, "tqdm", lambda iterable=None, **options: made.append(options) or iterable)
    assert progress.bar(range(2), desc="hashing") == range(2) and made == [{"desc": "hashing"}]


def test_the_platform_images_are_described_in_one_place_with_their_sources(monkeypatch, tmp_path, capsys):
    from notebooks import standin

    images = standin.images()
    assert set(images) == {"colab", "kaggle"}
    for spec in images.values():
        assert spec.source and spec.python == "3.12" and (REPO / "notebooks" / spec.notebook).is_file()
        assert any(package.startswith("jax==") for package in spec.packages)
    assert "tensorflow" in images["colab"].absent and "tensorflow-cpu==2.20.0" in images["kaggle"].packages
    assert images["colab"].environment["COLAB_RELEASE_TAG"]
    monkeypatch.setattr(standin, "installed", lambda python: {"jaxlib": "0.7.2"})
    assert "collective_call_terminate" not in standin.xla_flags("python")  # older jaxlib rejects the flag
    monkeypatch.setattr(standin, "installed", lambda python: {"jaxlib": "0.9.0"})
    assert standin.xla_flags("python").endswith(standin.COLLECTIVE_TIMEOUT)
    assert standin.main(["colb", "--smoke"]) == 2 and "did you mean 'colab'?" in capsys.readouterr().err
    assert standin.main(["kaggle"]) == 2 and "--data: a full run needs" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("keep")
    assert standin.main(["kaggle", "--smoke", "--out", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "keep"
