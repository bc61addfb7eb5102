"""``python -m eval.export --model PATH --format savedmodel|tflite [--quantize] [--out PATH]``.

A serving artefact with the preprocessing inside: it takes raw RGB images (uint8, ``[batch, height,
width, 3]``, any size) under the input name ``images`` and returns one probability vector per head
(signature ``serving_default``). Resizing, and the normalisation a model trained with
``data.normalize_in: pipeline`` expects, happen inside. Where the model's calibration and
out-of-distribution threshold are set (``<model>.trust.json``, by training or ``eval.test``), they
are applied inside too: the probabilities are calibrated and an output ``ood_score`` is added (in
distribution when it is at most the threshold in ``model_info.json``). Next to the artefact:
``model_info.json`` (heads, image size, class names, the threshold and temperatures; the SavedModel
keeps it in ``assets/``), the run's ``manifest.json`` and ``config.yaml``. The export is then checked
against the Keras model (calibrated and scored) on the same images.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from common import fs
from common.cli import command_parser, run_main
from common.errors import UserError
from common.registry import Registry
from common.trust import FLOOR, OOD_SCORE, Trust, load_trust
from eval.datasource import model_folders, class_names, find_data, model_to, output_folder, parent
from eval.loading import INPUT_NAME, MODEL_INFO, SERVING_KEY, load_predictor, prepare_images, tflite_info_path
from eval.trust import EMBEDDING, heads_and_embedding, trusted_predict
from training.run import copy_atomic

TOLERANCE = 1e-4  # largest probability difference accepted for an unquantised export
CHECK_SIZES = ((1, None), (2, (375, 500)))  # (batch, (height, width) or None: the model's own size)


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One kind of artefact: its default name, what ``--out`` must be (checked before any work),
    how it is written, and the folder its manifest and config go to."""

    default_name: Callable[[str, bool], str]  # (model stem, quantize) → file or folder name
    check: Callable[[str, str], None]  # (model path, target)
    write: Callable  # (predictor, target, model info, quantize, trust or None)
    run_files_folder: Callable[[str], str]  # target → folder
    quantizable: bool = False


EXPORTS: Registry[ExportFormat] = Registry("export format", where="--format")


def default_out(model_path: str, fmt: str, quantize: bool) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(model_path)))[0]
    return fs.join(parent(model_path.rstrip("/")), "export", EXPORTS.get(fmt).default_name(stem, quantize))


def model_info(predictor, manifest: Optional[dict], quantize: bool = False, trust: Optional[Trust] = None) -> dict:
    info = {**predictor.info(), "quantized": quantize}
    if trust is not None:  # applied inside: the outputs are calibrated; in_distribution is ood_score <= threshold
        info["trust"] = trust.describe()
        info["outputs"] = {**{head: "calibrated probabilities" for head in predictor.heads},
                           OOD_SCORE: f"out-of-distribution score; in distribution when <= {trust.threshold:.6f}"}
    if manifest is not None:
        info["classes"] = class_names(manifest, predictor.heads)
        info["model_to_make"] = model_to(manifest, "make")
    return info


def trust_graph(trust: Trust):
    """``(heads' probabilities, embeddings) → outputs`` in TensorFlow ops, as :mod:`common.trust`
    computes them in NumPy: each head's probabilities at its temperature, and ``ood_score``, the
    distance to the k-th nearest reference embedding (the reference travels inside the export)."""
    reference = tf.constant(np.asarray(trust.reference, np.float32))
    k = min(trust.k, len(trust.reference))

    def apply(probs: dict, embeddings):
        outputs = {head: tf.nn.softmax(tf.math.log(tf.maximum(value, FLOOR)) / trust.temperatures.get(head, 1.0))
                   for head, value in probs.items()}
        flat = tf.reshape(embeddings, [tf.shape(embeddings)[0], -1])
        unit = flat / tf.maximum(tf.norm(flat, axis=1, keepdims=True), 1e-12)
        squared = tf.maximum(2.0 - 2.0 * tf.matmul(unit, reference, transpose_b=True), 0.0)
        outputs[OOD_SCORE] = tf.sqrt(-tf.math.top_k(-squared, k=k).values[:, k - 1])
        return outputs

    return apply


def serving_model(predictor, trust: Optional[Trust]):
    """The Keras model the export serves: the model itself, or, with a trust, one that also gives the
    embedding (same weights)."""
    model = predictor.keras_model
    if trust is None:
        return model
    return keras.Model(model.inputs, {**dict(zip(model.output_names, model.outputs)),
                                      EMBEDDING: model.get_layer(EMBEDDING).output})


def write_savedmodel(predictor, target: str, info: dict, trust: Optional[Trust] = None) -> None:
    """Write the SavedModel to a temporary folder beside ``target``, then move it into place. With a
    ``trust``, its outputs are calibrated and carry ``ood_score``."""
    model, size, pixels = serving_model(predictor, trust), predictor.image_size, predictor.pixels
    finish = trust_graph(trust) if trust is not None else None

    def serve(images):
        outputs = model(prepare_images(images, size, pixels), training=False)
        if finish is None:
            return outputs
        return finish({head: outputs[head] for head in predictor.heads}, outputs[EMBEDDING])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SERVING_KEY, fn=serve,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
    temporary = fs.temporary_name(target)
    try:
        archive.write_out(temporary, verbose=False)
        fs.makedirs(fs.join(temporary, "assets"))
        fs.write_text_atomic(fs.join(temporary, "assets", MODEL_INFO), json.dumps(info, indent=2, ensure_ascii=False))
        replace_folder(temporary, target)
    finally:
        if fs.exists(temporary):
            fs.remove_tree(temporary)


# what a SavedModel export is made of, and the run's files copied beside it; anything else is someone else's
SAVEDMODEL_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")
RUN_FILES = ("manifest.json", "config.yaml")


def replace_folder(new: str, target: str) -> None:
    """Move the export in ``new`` into ``target``. Into an earlier export (``check_target`` made sure it
    is one of ours) only its own entries are replaced — the earlier ones are moved aside first and
    deleted last; what others put there (``eval.test``'s report, a note) stays."""
    if not fs.exists(target):
        fs.rename(new, target)
        return
    own = set(fs.listdir(new)) | set(SAVEDMODEL_ENTRIES) | set(RUN_FILES)
    aside = fs.temporary_name(target)
    fs.makedirs(aside)
    for name in fs.listdir(target):
        if name in own:
            fs.rename(fs.join(target, name), fs.join(aside, name))
    for name in fs.listdir(new):
        fs.rename(fs.join(new, name), fs.join(target, name))
    fs.remove_tree(aside)
    fs.remove_tree(new)


def is_savedmodel_export(folder: str) -> bool:
    return fs.exists(fs.join(folder, "saved_model.pb")) and fs.exists(fs.join(folder, "assets", MODEL_INFO))


def is_tflite(path: str) -> bool:
    """A TFLite flatbuffer carries the identifier ``TFL3`` at bytes 4–8."""
    with fs.open_file(path, "rb") as handle:
        return handle.read(8)[4:8] == b"TFL3"


def is_model_info(path: str) -> bool:
    try:
        return {"heads", "image_size"} <= set(json.loads(fs.read_text(path)))
    except (ValueError, TypeError, UnicodeDecodeError):
        return False


def check_savedmodel_target(model_path: str, target: str) -> None:
    """A SavedModel goes to a new or empty folder, or replaces a previous export of this command."""
    if fs.exists(target) and not fs.isdir(target):
        raise UserError(f"--out: {target} is a file; a SavedModel export is a folder")
    if fs.isdir(target) and fs.listdir(target) and not is_savedmodel_export(target):
        shown = ", ".join(fs.listdir(target)[:4]) + (", …" if len(fs.listdir(target)) > 4 else "")
        raise UserError(f"--out: {target} is not empty and not an export of eval.export (it holds {shown}); "
                        "choose a new or empty folder (nothing was changed)")
    fs.ensure_writable_folder(parent(target), "--out")


def check_tflite_target(model_path: str, target: str) -> None:
    """A ``.tflite`` file (new, or a previous export), its description and the run's files beside it
    must not overwrite anything this command did not write (a dataset's manifest, say)."""
    if not target.endswith(".tflite"):
        raise UserError(f"--out: a TFLite model is a file ending in .tflite (received {target!r})")
    if fs.isdir(target):
        raise UserError(f"--out: {target} is a folder; a TFLite export is a file ending in .tflite")
    folder = parent(target)
    fs.ensure_writable_folder(folder, "--out")
    if fs.exists(target) and not is_tflite(target):
        raise UserError(f"--out: {target} exists and is not a TFLite model; choose another file name")
    sidecar = tflite_info_path(target)
    if fs.exists(sidecar) and not is_model_info(sidecar):
        raise UserError(f"--out: {sidecar} (where the model description goes) exists and was not written by "
                        "eval.export; choose another file name")
    for name in RUN_FILES:
        source, existing = run_file(model_path, name), fs.join(folder, name)
        if source and fs.exists(existing) and os.path.abspath(source) != os.path.abspath(existing) \
                and fs.read_bytes(source) != fs.read_bytes(existing):
            raise UserError(f"--out: {folder} holds another {name} (not the one of {model_path}); export into "
                            "another folder")


def convert_tflite(savedmodel: str, quantize: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(savedmodel)
    if quantize:  # dynamic-range quantisation: int8 weights, float activations; no calibration data needed
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def write_tflite(predictor, target: str, info: dict, quantize: bool, trust: Optional[Trust] = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        savedmodel = os.path.join(folder, "savedmodel")
        if predictor.kind == "savedmodel":
            savedmodel = predictor.path
        else:
            write_savedmodel(predictor, savedmodel, info, trust)
        flatbuffer = convert_tflite(savedmodel, quantize)
    fs.write_bytes_atomic(target, flatbuffer)
    fs.write_text_atomic(tflite_info_path(target), json.dumps(info, indent=2, ensure_ascii=False))



def run_file(model_path: str, name: str) -> Optional[str]:
    """The run's ``name`` (manifest or config) next to the model or one folder up, if any."""
    return next((fs.join(f, name) for f in model_folders(model_path) if fs.exists(fs.join(f, name))), None)


def copy_run_files(model_path: str, folder: str) -> None:
    """The run's manifest and config beside the artefact, so that it is self-describing."""
    for name in RUN_FILES:
        source = run_file(model_path, name)
        if source and os.path.abspath(source) != os.path.abspath(fs.join(folder, name)):
            copy_atomic(source, fs.join(folder, name))


def check_images(image_size: int, seed: int = 0):
    """Random photos-to-be: one at the model's size and a batch at a camera-like aspect ratio."""
    rng = np.random.default_rng(seed)
    for batch, shape in CHECK_SIZES:
        height, width = shape or (image_size, image_size)
        yield rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def compare(reference, exported, image_size: int) -> dict:
    """Largest probability difference and top-1 agreement between two ``images → outputs`` functions
    on the same images (and the largest ``ood_score`` difference, where both give one)."""
    largest, agree, total, score = 0.0, 0, 0, None
    for images in check_images(image_size):
        expected, actual = reference(images), exported(images)
        for head in expected:
            difference = float(np.max(np.abs(expected[head] - actual[head])))
            if head == OOD_SCORE:
                score = max(score or 0.0, difference)
                continue
            largest = max(largest, difference)
            agree += int(np.sum(expected[head].argmax(axis=1) == actual[head].argmax(axis=1)))
            total += len(images)
    result = {"max_abs_difference": largest, "top1_agreement": agree / total}
    return {**result, "max_score_difference": score} if score is not None else result


def export(model: str, fmt: str, out: Optional[str] = None, quantize: bool = False, check: bool = True) -> dict:
    """Write ``model`` as ``fmt`` (a registered export format) and compare it with the model."""
    if keras.config.backend() != "tensorflow":  # SavedModel and TFLite are TensorFlow's formats
        raise UserError(f"eval.export writes TensorFlow artefacts and needs Keras on the TensorFlow backend (this "
                        f"process runs {keras.config.backend()}); run it as KERAS_BACKEND=tensorflow python -m "
                        "eval.export … — a model trained on JAX exports unchanged")
    kind = EXPORTS.get(fmt)
    if quantize and not kind.quantizable:
        raise UserError(f"--quantize: only for --format tflite (a {fmt} export keeps float weights)")
    if not fs.exists(model):
        raise UserError(f"--model: {model!r} does not exist")
    target = out or default_out(model, fmt, quantize)
    if not out:  # beside the model, or in the working folder when the model's folder is read-only
        target = fs.join(output_folder(None, parent(target), ("*",), "eval.export"), os.path.basename(target))
    kind.check(model, target)
    predictor = load_predictor(model)
    if predictor.kind == "tflite" or (predictor.kind == "savedmodel" and fmt == "savedmodel"):
        raise UserError(f"--model: {model} is already an exported {predictor.kind}; export from the .keras or .h5 "
                        "file (a SavedModel export can be converted with --format tflite)")
    manifest = _manifest_or_none(model)
    trust = export_trust(predictor, model)
    info = model_info(predictor, manifest, quantize, trust)
    kind.write(predictor, target, info, quantize, trust)
    copy_run_files(model, kind.run_files_folder(target))
    result = {"path": target, "format": fmt, "quantized": quantize, "bytes": _size(target),
              "trust": trust is not None}
    if check:
        written = load_predictor(target, written_here=True)
        result["check"] = compare(trusted_predict(predictor, trust), trusted_predict(written, written.trust),
                                  predictor.image_size)
        limit = None if quantize else TOLERANCE
        worst = max(result["check"]["max_abs_difference"], result["check"].get("max_score_difference") or 0.0)
        if limit is not None and worst > limit:
            raise UserError(f"the export at {target} predicts differently from {model}: largest probability or "
                            f"score difference {worst:.2e} (allowed {limit:.0e})")
    return result


def export_trust(predictor, model: str) -> Optional[Trust]:
    """The calibration and threshold saved beside ``model`` (set by training or ``eval.test``), which the
    export applies inside; an export of an export keeps its own; ``None`` (with a note) when not set."""
    if predictor.trust is not None:  # a SavedModel export converted to TFLite: its graph applies them already
        return predictor.trust
    trust = load_trust(model)
    if trust is None:
        print(f"note: {model} has no calibration and threshold beside it (python -m eval.test sets them): the export "
              "gives uncalibrated probabilities and no ood_score", file=sys.stderr)
    elif predictor.keras_model is None or heads_and_embedding(predictor) is None:
        raise UserError(f"--model: {model} has a calibration and threshold beside it but no 'embedding' layer to "
                        "score with; export from the .keras file")
    return trust


EXPORTS.register("savedmodel")(ExportFormat(
    default_name=lambda stem, quantize: f"{stem}_savedmodel", check=check_savedmodel_target,
    write=lambda predictor, target, info, quantize, trust: write_savedmodel(predictor, target, info, trust),
    run_files_folder=lambda target: target))
EXPORTS.register("tflite")(ExportFormat(
    default_name=lambda stem, quantize: f"{stem}{'_quantized' if quantize else ''}.tflite",
    check=check_tflite_target, write=write_tflite,
    run_files_folder=parent, quantizable=True))


def _manifest_or_none(model: str) -> Optional[dict]:
    try:
        return find_data(model).manifest
    except UserError:  # exporting a bare model file still works; class names are then left out
        return None


def _size(path: str) -> int:
    if not fs.isdir(path):
        return fs.size(path)
    return sum(fs.size(fs.join(path, name)) for name in fs.walk_files(path))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.export", __doc__)
    parser.add_argument("--model", required=True, help=".keras or .h5 (or, for tflite, an exported SavedModel)")
    parser.add_argument("--format", required=True, help=" or ".join(EXPORTS.names()))
    parser.add_argument("--quantize", action="store_true", help="TFLite dynamic-range quantisation (int8 weights)")
    parser.add_argument("--out", help="SavedModel folder or .tflite file (default: export/ beside the model)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing the export with the Keras model")
    args = parser.parse_args(argv)
    result = export(args.model, args.format, args.out, args.quantize, not args.no_check)
    print(f"exported {result['format']}{' (quantized)' if result['quantized'] else ''}: {result['path']} "
          f"({result['bytes'] / 1e6:.1f} MB)")
    if result["trust"]:
        print("  inside: calibrated probabilities and the output ood_score (in distribution when at most the "
              "threshold in model_info.json)")
    if "check" in result:
        score = result["check"].get("max_score_difference")
        print(f"  check against {args.model}: largest probability difference "
              f"{result['check']['max_abs_difference']:.2e}, top-1 agreement {result['check']['top1_agreement']:.0%}"
              + (f", largest ood_score difference {score:.2e}" if score is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
