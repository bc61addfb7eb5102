"""What the Colab and Kaggle notebooks call: one function per step, so that no pipeline logic lives
in a notebook cell. Every step is the package's own (``data_prep``, ``training``, ``tuning``,
``eval``) — this module sits above them all and only chains their functions, prints what happened
and shows figures inline.

Re-running a step continues it: shard building reuses finished shards, training resumes after the
last completed epoch, a search continues with its completed trials.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
from typing import Dict, List, Optional, Sequence

from common import backend, fs
from common.cli import quiet_tensorflow, setup_logging

# The imports below follow the backend choice: the notebook's BACKEND (chosen in the cell before),
# else KERAS_BACKEND or auto; TensorFlow (tf.data, tf.io.gfile) is imported once, its chatter filtered.
backend.choose()
quiet_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from common.errors import UserError  # noqa: E402
from data_prep.build import build_dataset  # noqa: E402 (and below)
from data_prep.options import BuildOptions
from data_prep.prepare import ensure_synthetic
from eval.curves import draw
from eval.report import print_evaluation
from eval.test import evaluate as run_evaluation
from training.config import read_config
from training.distribute import choose_distribution, global_batch_size, tpu_hints
from training.trainer import fit
from training.validation import load_config
from tuning.search import SearchOptions, search

PLATFORMS = ("colab", "kaggle", "local")
# what each annotation accepts, and the words an error uses for it
ARGUMENT_TYPES = {"str": (str, "text"), "int": (int, "a whole number"), "float": ((int, float), "a number"),
                  "bool": (bool, "True or False")}
KAGGLE_PREFIX = "kaggle:"  # DATA_SOURCE = "kaggle:OWNER/DATASET[/versions/N]" is fetched with kagglehub
KAGGLE_INPUT = "/kaggle/input"  # where Kaggle mounts the datasets attached to a notebook
# Keras preprocessing layers inside the model under JAX's DataParallel were reported to take a TPU run
# from 10 minutes to 2.5 hours; until that is measured here, augmentation stays in tf.data on JAX.
DEVICE_AUGMENTATION_ON_JAX = "https://github.com/keras-team/keras/issues/23229"


def _accepts(annotation: str, value) -> Optional[str]:
    """``None`` when ``value`` fits ``annotation`` (as written in this module), else what was expected."""
    optional = annotation.startswith("Optional[")
    kind = annotation[len("Optional["):-1] if optional else annotation
    if value is None and optional:
        return None
    if kind.startswith(("Sequence[", "List[")):
        inner = kind[kind.index("[") + 1:-1]
        fits = isinstance(value, (list, tuple)) and all(_accepts(inner, item) is None for item in value)
        return None if fits else f"a list of {ARGUMENT_TYPES[inner][1]}"
    accepted, words = ARGUMENT_TYPES[kind]
    if isinstance(value, accepted) and (kind == "bool" or not isinstance(value, bool)):
        return None
    return words + (" or None" if optional else "")


def notebook_step(function):
    """A notebook step: arguments that do not exist or are of the wrong type (``max_epochs='10'``,
    ``overrides='training.epochs=2'``) are one :class:`UserError` naming the step and the argument,
    not a ``TypeError`` from deep inside."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise UserError(f"nb.{function.__name__}: {error} (it takes "
                            f"{', '.join(signature.parameters)})") from None
        for name, value in bound.arguments.items():
            annotation = signature.parameters[name].annotation
            if isinstance(annotation, str) and annotation.split("[")[0] in (*ARGUMENT_TYPES, "Optional", "Sequence",
                                                                            "List"):
                expected = _accepts(annotation, value)
                if expected:
                    raise UserError(f"nb.{function.__name__}: {name} expects {expected} (received {value!r})")
        return function(*args, **kwargs)

    return checked


def _short_user_errors() -> None:
    """In IPython, show a :class:`UserError` as one ``error: …`` line instead of a traceback (the
    cell still fails, so *Run all* stops there)."""
    try:
        shell = get_ipython()  # noqa: F821  (defined inside IPython only)
    except NameError:
        return

    def handler(shell, kind, value, tb, tb_offset=None):
        message = f"error: {value}"
        print(message, file=sys.stderr)
        return [message]

    shell.set_custom_exc((UserError,), handler)


_short_user_errors()


def platform() -> str:
    """``colab``, ``kaggle`` or ``local`` (from the variables those runtimes set)."""
    if os.environ.get("COLAB_RELEASE_TAG") or os.environ.get("COLAB_GPU") is not None or "google.colab" in sys.modules:
        return "colab"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("KAGGLE_URL_BASE"):
        return "kaggle"
    return "local"


def project_root(start: Optional[str] = None) -> str:
    """The checkout holding this package (a folder with ``training/fit.py``), searched upwards."""
    folder = os.path.abspath(start or os.getcwd())
    while True:
        if os.path.exists(os.path.join(folder, "training", "fit.py")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            raise UserError(f"no checkout of the project above {start or os.getcwd()} "
                            "(looked for training/fit.py); clone it and set PROJECT_DIR")
        folder = parent


@notebook_step
def describe_accelerator(config: str = "demo.yaml", overrides: Sequence[str] = ()):
    """The backend, devices, distribution and global batch that training ``config`` will use here,
    printed; returns the distribution."""
    settings = read_config(config, overrides)
    chosen = backend.choose(settings.training.backend)
    distribution = choose_distribution(settings.training.strategy, settings.training.tpu, settings.training.multi_host)
    global_batch = global_batch_size(settings.data.batch_size, distribution.replicas, settings.data.global_batch_size)
    versions = [f"Keras {keras.__version__}", f"TensorFlow {tf.__version__}"] + (
        [f"JAX {sys.modules['jax'].__version__}"] if "jax" in sys.modules else [])
    print(f"platform: {platform()}; {', '.join(versions)}")
    print(f"backend: {chosen.name} — {chosen.reason}")
    print(f"accelerator: {distribution.kind}, {distribution.replicas} replica(s)"
          + (f" on {distribution.processes} hosts" if distribution.processes > 1 else "") + f" — {distribution.reason}")
    print(f"devices: {', '.join(distribution.devices) or 'the default device'}")
    print(f"global batch: {global_batch} ({global_batch // distribution.replicas} per replica)")
    if distribution.kind in ("cpu", "gpu") and tpu_hints():
        print("TPU signs were found but no TPU is used: on Colab and Kaggle keep training.backend: auto (JAX); "
              "on a Cloud TPU VM with tensorflow-tpu use training.backend: tensorflow")
    return distribution


@notebook_step
def synthetic_photos(work: str, makes: int = 4, models_per_make: int = 3, images_per_model: int = 14) -> str:
    """A small synthetic dataset in Stanford Cars' devkit layout under ``work`` (kept when present);
    returns its folder, to build shards from like the real one. For the notebooks' smoke mode."""
    return ensure_synthetic(work, "stanford_cars", "devkit", makes=makes, models_per_make=models_per_make,
                            images_per_model=images_per_model, bad_files=False, size=(160, 120))


@notebook_step
def dataset_folder(source: str) -> str:
    """The folder to build shards from. ``kaggle:OWNER/DATASET[/versions/N]``: the dataset attached
    to a Kaggle notebook under ``/kaggle/input`` as it is, else fetched with ``kagglehub`` (which
    attaches it on Kaggle, or downloads it into its cache, ``~/.cache/kagglehub`` or
    ``KAGGLEHUB_CACHE``). A local folder or ``gs://`` path is used as it is."""
    if not source.startswith(KAGGLE_PREFIX):
        if not fs.exists(source):
            raise UserError(f"DATA_SOURCE: {source} does not exist; give the dataset's folder (Drive, a Kaggle "
                            f"input, gs://…) or a {KAGGLE_PREFIX}OWNER/DATASET handle")
        return source
    try:
        import kagglehub  # optional: Colab and Kaggle ship it
    except ImportError:
        raise UserError("DATA_SOURCE is a Kaggle handle, but kagglehub is not installed: pip install kagglehub") \
            from None
    handle = source[len(KAGGLE_PREFIX):].strip("/")
    owner, slug = (handle.split("/") + ["", ""])[:2]
    for attached in (fs.join(KAGGLE_INPUT, slug), fs.join(KAGGLE_INPUT, "datasets", owner, slug)):
        if slug and fs.isdir(attached):  # on Kaggle, attached with Add Input: no download, no API call
            print(f"data: {handle}, attached at {attached}")
            return attached
    try:
        folder = kagglehub.dataset_download(handle)
    except Exception as error:  # kagglehub raises HTTP, auth and value errors of its own kinds
        raise UserError(f"DATA_SOURCE: could not fetch the Kaggle dataset {handle!r} ({type(error).__name__}: "
                        f"{error}); check the handle, or add KAGGLE_USERNAME and KAGGLE_KEY (Colab: Secrets) if "
                        "Kaggle asks for a login, or download it yourself and give its folder") from None
    print(f"data: {handle} in {folder}")
    return folder


@notebook_step
def prepare_shards(dataset: str, source: str, shards: str, **options) -> dict:
    """Build (or reuse, or finish) the shards of ``dataset`` read from ``source``; prints a summary and
    returns the manifest. ``options`` are :class:`data_prep.options.BuildOptions` fields
    (``split``, ``max_side``, ``min_images``, ``crop``, …)."""
    known = {field.name for field in dataclasses.fields(BuildOptions)} - {"dataset", "root", "out"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"prepare_shards: unknown option(s) {', '.join(unknown)}; expected some of "
                        f"{', '.join(sorted(known))}")
    manifest = build_dataset(BuildOptions(dataset=dataset, root=source, out=shards, **options))
    summarise_manifest(manifest, shards)
    return manifest


def summarise_manifest(manifest: dict, shards: str) -> None:
    splits = ", ".join(f"{name} {entry['examples']:,}" for name, entry in manifest["splits"].items())
    heads = ", ".join(f"{name} {entry['num_classes']}" for name, entry in manifest["heads"].items())
    print(f"shards: {shards}\n  images: {splits}\n  classes: {heads}")


@notebook_step
def train(config: str, shards: str, run_dir: str, overrides: Sequence[str] = ()) -> dict:
    """``python -m training.fit --config CONFIG --set data.shards=SHARDS --out RUN_DIR`` in-process.
    Re-running the cell after a disconnect resumes after the last completed epoch."""
    setup_logging()
    settings = host_augmentation_on_jax(config, [f"data.shards={shards}", "data.prepare=null"] + list(overrides))
    return fit(load_config(config, settings), run_dir)


def host_augmentation_on_jax(config: str, overrides: Sequence[str]) -> List[str]:
    """``overrides``, plus ``data.augment_on=host`` (with a line saying why) when training on JAX
    would run the augmentation inside the model (see :data:`DEVICE_AUGMENTATION_ON_JAX`)."""
    overrides = list(overrides)
    settings = read_config(config, overrides)
    if keras.config.backend() == "jax" and settings.data.augment_on == "device" and settings.data.augment != "none":
        print("augmentation runs in tf.data (data.augment_on: host) on JAX: Keras preprocessing layers inside the "
              f"model were reported to slow JAX's DataParallel on a TPU down 15-fold ({DEVICE_AUGMENTATION_ON_JAX})")
        overrides.append("data.augment_on=host")
    return overrides


@notebook_step
def tune(config: str, shards: str, out: str, space: str = "report004", max_epochs: int = 10, factor: int = 3,
         objective: str = "val_loss", overrides: Sequence[str] = ()) -> str:
    """``python -m tuning.hyperband`` in-process; returns the path of ``best.yaml``. Re-running continues."""
    setup_logging()
    settings = host_augmentation_on_jax(config, [f"data.shards={shards}", "data.prepare=null"] + list(overrides))
    search(SearchOptions(config, space, max_epochs, factor, objective, out=out, overrides=settings))
    return fs.join(out, "best.yaml")


@notebook_step
def evaluate(model: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None, tta: bool = False,
             batch_size: int = 32, show: bool = True, ood: Optional[str] = None) -> dict:
    """``python -m eval.test`` in-process (it also sets the model's calibration and abstention;
    ``ood``: photos outside its classes, to measure abstention); shows the report's figures inline."""
    metrics = run_evaluation(model, data, split, out, tta, batch_size, ood)
    print_evaluation(metrics["title"], metrics, metrics["out"])
    if show:
        show_report(metrics["out"])
    return metrics


@notebook_step
def report_figures(folder: str, heads: Optional[Sequence[str]] = None) -> List[str]:
    """The figures of a report folder (confusion and reliability per head), in the report's order."""
    figures = fs.join(folder, "figures")
    if not fs.isdir(figures):
        raise UserError(f"{folder} has no figures/ folder; is it a report of eval.test?")
    names = sorted(fs.listdir(figures))
    if heads:
        names = [name for name in names if any(name.endswith(f"_{head}.png") for head in heads)]
    return [fs.join(figures, name) for name in names if name.endswith(".png")]


@notebook_step
def show_images(paths: Sequence[str], width: int = 480) -> None:
    """Display PNGs inline (a plain listing outside IPython)."""
    try:
        from IPython.display import Image, display  # optional: only inside a notebook
    except ImportError:
        for path in paths:
            print(path)
        return
    for path in paths:
        display(Image(data=fs.read_bytes(path), width=width))


@notebook_step
def show_report(folder: str, heads: Optional[Sequence[str]] = None) -> Dict[str, list]:
    """The report's figures inline; returns them by kind."""
    paths = report_figures(folder, heads)
    show_images(paths)
    return {kind: [path for path in paths if f"{kind}_" in path] for kind in ("confusion", "reliability")}


@notebook_step
def show_curves(run_dir: str) -> List[str]:
    """Redraw and show a run's training curves (``eval.curves``)."""
    paths = draw([run_dir])
    show_images(paths)
    return paths
