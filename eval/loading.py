"""Load any saved model (``.keras``, ``.h5``, SavedModel folder, ``.tflite``) behind one interface.

Every kind takes raw RGB pixels (uint8, ``[N, H, W, 3]``, any size) and returns ``{head:
probabilities}``: the image is resized to the model's size and, for a model trained with
``data.normalize_in: pipeline``, normalised, exactly as ``eval.export`` bakes into its artefacts.
Custom objects are registered by importing the modules that define them, so no
``custom_objects`` argument is ever needed.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import zipfile
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

import training.losses  # noqa: F401  (registers its classes with keras.saving: no custom_objects needed)
import training.metrics  # noqa: F401  (likewise)
import training.optim  # noqa: F401  (likewise; models.layers' are registered through models.backbones)
from common import fs
from common.cli import filtered_stderr
from common.errors import UserError
from common.registry import Registry
from common.trust import Trust
from eval.datasource import training_config
from training.data import pipeline_normalised
from models.backbones import BACKBONES

SERVING_KEY = "serving_default"
INPUT_NAME = "images"
MODEL_INFO = "model_info.json"  # heads and image size of an exported model
KINDS = ".keras, .h5, .tflite or a SavedModel folder"


@dataclasses.dataclass
class Predictor:
    """A loaded model: ``predict(uint8 images [N, H, W, 3]) → {head: [N, classes]}``."""

    path: str
    kind: str  # keras | savedmodel | tflite
    heads: Dict[str, int]
    image_size: int
    predict: Callable[[np.ndarray], Dict[str, np.ndarray]]
    keras_model: Optional[object] = None
    pixels: Optional[str] = None  # normalisation applied before the Keras model (None: inside it)
    trust: Optional[Trust] = None  # an export's calibration and score, applied inside it
    scored: Optional[Callable[[np.ndarray], Dict[str, np.ndarray]]] = None  # then: its heads and "ood_score"

    def info(self) -> dict:
        return {"heads": self.heads, "image_size": self.image_size, "input": INPUT_NAME,
                "input_format": "uint8 RGB [batch, height, width, 3], any size (resized inside)"}


def prepare_images(images, image_size: int, pixels: Optional[str] = None):
    """Raw uint8 RGB (any size) → the model's input: resized (bilinear) to ``image_size`` and rounded
    to whole pixel values, as the training and evaluation pipelines do, then, where the model
    expects it, normalised. An image already at ``image_size`` passes unchanged."""
    x = tf.round(tf.image.resize(tf.cast(images, tf.float32), [image_size, image_size]))  # TFLite: no uint8 resize
    return pipeline_normalised(x, pixels) if pixels else x


def serving_function(model, image_size: int, pixels: Optional[str] = None):
    """A ``tf.function`` taking raw uint8 images (any batch and size) and returning the model's outputs
    (TensorFlow backend: what the SavedModel export serves)."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
    def serve(images):
        return model(prepare_images(images, image_size, pixels), training=False)

    return serve


KERAS_SERVING: Registry[Callable] = Registry("Keras backend")


@KERAS_SERVING.register("tensorflow")
def _tensorflow_serving(model, image_size: int, pixels: Optional[str]):
    serve = serving_function(model, image_size, pixels)
    return lambda images: keras.tree.map_structure(np.asarray, serve(np.asarray(images, np.uint8)))


@KERAS_SERVING.register("jax")
def _jax_serving(model, image_size: int, pixels: Optional[str]):
    def serve(images):  # resized by TensorFlow (the same bilinear resize), predicted by the compiled JAX model
        inputs = prepare_images(np.asarray(images, np.uint8), image_size, pixels).numpy()
        return keras.tree.map_structure(np.asarray, model.predict_on_batch(inputs))

    return serve


def keras_predict(model, image_size: int, pixels: Optional[str] = None) -> Callable:
    """Raw uint8 images (any batch and size) → the model's outputs as NumPy, on Keras' backend."""
    return KERAS_SERVING.get(keras.config.backend())(model, image_size, pixels)


def _output_heads(model) -> Dict[str, int]:
    shapes = model.output_shape
    if isinstance(shapes, dict):
        return {name: int(shape[-1]) for name, shape in shapes.items()}
    shapes = shapes if isinstance(shapes, list) else [shapes]
    return {name: int(shape[-1]) for name, shape in zip(model.output_names, shapes)}


def input_pixels(model_path: str) -> Optional[str]:
    """The normalisation to apply outside the model: the backbone's, for ``normalize_in: pipeline`` runs."""
    config = training_config(model_path)
    if config is None or config.data.normalize_in != "pipeline":
        return None
    return BACKBONES.get(config.model.backbone).pixels


def _keras(path: str) -> Predictor:
    model = keras.models.load_model(path, compile=False, safe_mode=True)  # no code from the file runs
    size, pixels = int(model.input_shape[1]), input_pixels(path)
    predict = keras_predict(model, size, pixels)
    return Predictor(path, "keras", _output_heads(model), size, predict, model, pixels)


def _info(path: str) -> dict:
    if not fs.exists(path):
        raise UserError(f"--model: {path} is missing: an exported model needs it (heads and image size); "
                        "export again with python -m eval.export")
    try:
        info = json.loads(fs.read_text(path))
        return {"heads": {str(k): int(v) for k, v in info["heads"].items()}, "image_size": int(info["image_size"]),
                "trust": Trust.in_export(info["trust"]) if info.get("trust") else None}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"--model: {path} is not a model description written by eval.export ({error})") from None


# what --model accepts, for every command's help: a SavedModel is a program, not only weights
MODEL_HELP = (".keras (preferred: loaded in Keras' safe mode), .h5, .tflite or a SavedModel folder. A SavedModel "
              "is a program: loading it runs the graph it holds, which can read and write files; load only "
              "SavedModels you trust")
SAVEDMODEL_NOTE = ("note: {path} is a SavedModel: its own graph runs here (it can read and write files); load only "
                   "SavedModels you trust, or the .keras file it was exported from")


def _savedmodel(path: str) -> Predictor:
    loaded = tf.saved_model.load(path)
    if SERVING_KEY not in loaded.signatures:
        raise UserError(f"--model: {path} has no '{SERVING_KEY}' signature (export it with python -m eval.export)")
    serve = loaded.signatures[SERVING_KEY]
    info = _info(fs.join(path, "assets", MODEL_INFO))

    def scored(images):
        outputs = serve(**{INPUT_NAME: tf.convert_to_tensor(np.asarray(images, np.uint8))})
        return {name: np.asarray(value) for name, value in outputs.items()}

    return exported(path, "savedmodel", info, scored)


def tflite_interpreter(path: str, threads: Optional[int] = None):
    """LiteRT's interpreter (``ai-edge-litert``), or TensorFlow's deprecated copy where it is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - platforms without LiteRT wheels
        import warnings

        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path, num_threads=threads or os.cpu_count())


def tflite_info_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".json"


def _tflite(path: str, threads: Optional[int] = None) -> Predictor:
    info = _info(tflite_info_path(path))
    runner = tflite_interpreter(path, threads).get_signature_runner(SERVING_KEY)
    with filtered_stderr():  # LiteRT announces its CPU delegate on the first run
        runner(**{INPUT_NAME: np.zeros((1, info["image_size"], info["image_size"], 3), np.uint8)})

    def scored(images):
        outputs = runner(**{INPUT_NAME: np.ascontiguousarray(images, np.uint8)})
        return {name: np.asarray(value) for name, value in outputs.items()}

    return exported(path, "tflite", info, scored)


def exported(path: str, kind: str, info: dict, scored: Callable[[np.ndarray], Dict[str, np.ndarray]]) -> Predictor:
    """An export's predictor: ``predict`` gives its heads; where it applies its trust inside (outputs
    calibrated, plus ``ood_score``), ``scored`` gives every output."""
    heads = info["heads"]

    def predict(images):
        outputs = scored(images)
        return {name: value for name, value in outputs.items() if name in heads} if info["trust"] else outputs

    return Predictor(path, kind, heads, info["image_size"], predict, trust=info["trust"],
                     scored=scored if info["trust"] else None)


def finite_outputs(path: str, predict: Callable[[np.ndarray], Dict[str, np.ndarray]]):
    """``predict`` that refuses outputs which are not numbers (a model whose training diverged)."""
    def checked(images):
        outputs = predict(images)
        broken = sorted(head for head, value in outputs.items() if not np.all(np.isfinite(value)))
        if broken:
            raise UserError(f"--model: {path} gives outputs that are not numbers (NaN or infinite) for "
                            f"{', '.join(broken)}: its weights are broken, typically because its training "
                            "diverged (see the run's history.csv); retrain it, e.g. with a lower learning rate")
        return outputs

    return checked


def load_predictor(path: str, threads: Optional[int] = None, written_here: bool = False) -> Predictor:
    """Load ``path`` whatever it is; a clear error for a missing, unknown or damaged model, and for a
    model whose outputs are not numbers (checked on a blank image now, and on every batch). Loading a
    SavedModel says that its graph runs (unless this process has just written it: ``written_here``)."""
    if not written_here and fs.isdir(path) and model_format(path) == "savedmodel":
        print(SAVEDMODEL_NOTE.format(path=path), file=sys.stderr)
    predictor = _load(path, threads)
    predictor.predict = finite_outputs(path, predictor.predict)
    predictor.predict(np.zeros((1, predictor.image_size, predictor.image_size, 3), np.uint8))
    return predictor


@dataclasses.dataclass(frozen=True)
class ModelFormat:
    """A kind of saved model: how to load it, and how its first bytes look when it is complete."""

    load: Callable[[str, Optional[int]], Predictor]
    complete: Callable[[bytes], bool]
    damaged: str  # what an incomplete file is not


MODEL_FORMATS: Registry[ModelFormat] = Registry("model format", where="--model")
MODEL_FORMATS.register(".keras")(ModelFormat(lambda path, threads: _keras(path),
                                             lambda head: zipfile.is_zipfile(io.BytesIO(head)), "a .keras zip archive"))
MODEL_FORMATS.register(".h5")(ModelFormat(lambda path, threads: _keras(path),
                                          lambda head: head.startswith(b"\x89HDF\r\n\x1a\n"), "an HDF5 file"))
MODEL_FORMATS.register(".tflite")(ModelFormat(_tflite, lambda head: head[4:8] == b"TFL3", "a TFLite flatbuffer"))
MODEL_FORMATS.register("savedmodel")(ModelFormat(lambda path, threads: _savedmodel(path), lambda head: True, ""))


def model_format(path: str) -> str:
    """``savedmodel`` for a folder, else the file's extension (a key of :data:`MODEL_FORMATS`)."""
    if not fs.exists(path):
        raise UserError(f"--model: {path!r} does not exist (expected {KINDS})")
    if fs.isdir(path):
        if not fs.exists(fs.join(path, "saved_model.pb")):
            raise UserError(f"--model: {path} is a folder but not a SavedModel (no saved_model.pb inside)")
        return "savedmodel"
    return MODEL_FORMATS.canonical(os.path.splitext(path)[1] or os.path.basename(path))


def check_complete(path: str, kind: ModelFormat) -> None:
    """A model file that is cut short or not what its name says gets a clear message (Keras would
    report a truncated ``.keras`` archive as "File not found")."""
    head = fs.read_bytes(path) if path.endswith(".keras") else fs.open_file(path, "rb").read(8)
    if not kind.complete(head):
        raise UserError(f"--model: {path} is damaged or incomplete (not {kind.damaged}); was it copied or "
                        "downloaded in full? Use the run's model.keras, or export again")


def _load(path: str, threads: Optional[int] = None) -> Predictor:
    kind = MODEL_FORMATS.get(model_format(path))
    if not fs.isdir(path):
        check_complete(path, kind)
    try:
        return kind.load(path, threads)
    except UserError:
        raise
    except Exception as error:  # damaged or foreign files: name the file and the cause, no traceback
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        if "truncated" in reason.lower():
            raise UserError(f"--model: {path} is damaged or incomplete (the file is cut short: {reason}); was it "
                            "copied or downloaded in full?") from None
        raise UserError(f"--model: cannot load {path} ({type(error).__name__}: {reason})") from None


def load_keras_model(path: str):
    """The Keras model itself (retrieval needs its layers): ``.keras`` or ``.h5`` only."""
    if not fs.isdir(path) and not path.endswith((".keras", ".h5")) and fs.exists(path):
        raise UserError(f"--model: {path} is not a Keras model; this command needs the .keras or .h5 file "
                        "(exported SavedModel and TFLite files keep only the predictions)")
    predictor = load_predictor(path)
    if predictor.keras_model is None:
        raise UserError(f"--model: {path} is a SavedModel export; this command needs the .keras or .h5 file")
    return predictor
