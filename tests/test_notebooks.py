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


def test_the_install_keeps_what_the_platform_ships(monkeypatch, tmp_path):
    """JAX, libtpu, NumPy and TensorFlow of a TPU image are pinned at their versions (never reinstalled);
    a tensorflow-cpu is added only where the image has no TensorFlow (Colab's TPU runtime)."""
    import importlib.metadata

    from notebooks import install

    shipped = {"jax": "0.7.2", "jaxlib": "0.7.2", "libtpu": "0.0.21", "numpy": "2.0.2"}

    def version(name):
        if name in shipped:
            return shipped[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    pins = install.platform_pins()
    assert pins == ["jax==0.7.2", "jaxlib==0.7.2", "libtpu==0.0.21", "numpy==2.0.2"]  # Colab's TPU runtime
    arguments = install.pip_arguments(str(REPO), str(tmp_path / "c.txt"), pins)
    assert arguments[-1] == install.TENSORFLOW_CPU and "-c" in arguments
    shipped["tensorflow-cpu"] = "2.20.0"  # Kaggle's TPU image
    assert install.extra_requirements(install.platform_pins()) == []
    requirements = (REPO / "requirements-notebook.txt").read_text().lower()
    for package in ("jax", "libtpu", "numpy", "tensorflow"):  # never reinstalled by the notebook requirements
        assert not any(line.startswith(package) for line in requirements.splitlines())


PLATFORMS = {"colab_tpu": ["jax==0.7.2", "jaxlib==0.7.2", "numpy==2.0.2"],  # JAX and NumPy, no TensorFlow
             "kaggle_tpu": ["jax==0.7.2", "jaxlib==0.7.2", "numpy==2.0.2", "tensorflow-cpu==2.20.0"]}
PYTHONS = ("3.11", "3.12")


@pytest.fixture(scope="module")
def resolved():
    """Every (platform, Python) resolution, run side by side (each mostly waits on the index)."""
    import concurrent.futures

    from notebooks import install

    with concurrent.futures.ThreadPoolExecutor(len(PLATFORMS) * len(PYTHONS)) as pool:
        futures = {(platform, python): pool.submit(install.check, python, pins)
                   for platform, pins in PLATFORMS.items() for python in PYTHONS}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("python_version", PYTHONS)
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_the_notebook_requirements_resolve_next_to_the_platform(resolved, python_version, platform):
    """pip resolves requirements-notebook.txt (binary wheels only) for each Python next to a TPU
    image's own packages, without installing anything (needs the package index; skipped without)."""
    result = resolved[platform, python_version]
    if result.returncode and ("Could not fetch" in result.stderr or "NewConnectionError" in result.stderr):
        pytest.skip("the package index cannot be reached")
    assert result.returncode == 0, result.stderr[-2000:]
