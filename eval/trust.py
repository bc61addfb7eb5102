"""Setting and measuring what a model can back (:mod:`common.trust`) from its shards and photos.

``eval.test`` fits the temperatures and the out-of-distribution threshold on the validation split,
saves them beside the model, reports the expected calibration error before and after and, with
``--ood PATH``, how well the score separates the test split from photos known to lie outside the
model's classes.
"""
from __future__ import annotations

import datetime
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from common import fs
from common.errors import UserError
from common.trust import ACCEPT, Trust, auroc, fpr_at_tpr, make_trust, save_trust
from data_prep.manifest import MANIFEST, data_card, load_manifest
from eval.datasource import DataSource
from eval.figures import pyplot, save_figure
from eval.images import image_files, load_image
from eval.metrics import calibration
from eval.retrieval import embedder
from eval.run_data import collect

EMBEDDING = "embedding"  # the layer every model of models.build names so (retrieval uses it too)


def split_outputs(predictor, source: DataSource, split: str, batch_size: int, config) -> Dict[str, object]:
    """Probabilities per head and embeddings of every image of ``split`` (one pass of each)."""
    embed = embedder(predictor, EMBEDDING)

    def both(images):
        return {**predictor.predict(images), EMBEDDING: embed(images)[EMBEDDING]}

    return collect(source.require_shards(), source.manifest, split, predictor.image_size, batch_size, both, config)


def build_trust(predictor, source: DataSource, config, batch_size: int, val_split: str = "val",
                fit_split: str = "train") -> Tuple[Optional[Trust], str]:
    """``(trust, "")``, or ``(None, why not)`` for a model without the layers it needs or data without
    a validation split."""
    if predictor.keras_model is None:
        return None, "an exported model keeps no embedding layer: set it from the .keras model"
    splits = {name: entry.get("examples", 0) for name, entry in source.manifest["splits"].items()}
    if not splits.get(val_split):
        return None, f"the data has no {val_split!r} split to set the threshold and temperatures on"
    reference = split_outputs(predictor, source, fit_split, batch_size, config)["outputs"][EMBEDDING]
    val = split_outputs(predictor, source, val_split, batch_size, config)
    outputs = val["outputs"]
    probs = {head: outputs[head] for head in predictor.heads if head in outputs}
    trust = make_trust(reference, probs, val["labels"], outputs[EMBEDDING], data_card(source.manifest),
                       f"{val_split} ({len(outputs[EMBEDDING])} images)")
    return trust, ""


def calibration_report(trust: Trust, probs: Dict[str, np.ndarray], labels: Dict[str, np.ndarray]) -> dict:
    """Per head: the temperature and the expected calibration error before and after it."""
    report = {}
    for head, temperature in trust.temperatures.items():
        known = labels[head] >= 0
        if not known.any():
            continue
        before = calibration(probs[head][known], labels[head][known])["ece"]
        after = calibration(trust.calibrated({head: probs[head][known]})[head], labels[head][known])["ece"]
        report[head] = {"temperature": temperature, "ece_before": before, "ece_after": after}
    return report


def photo_embeddings(predictor, path: str, batch_size: int, config) -> Tuple[np.ndarray, List[str]]:
    """Embeddings of the photos of a folder (or of every record of a shards folder)."""
    embed = embedder(predictor, EMBEDDING)
    if fs.exists(fs.join(path, MANIFEST)):
        manifest = load_manifest(path)
        vectors = [collect(path, manifest, split, predictor.image_size, batch_size, embed, config)["outputs"][EMBEDDING]
                   for split, entry in manifest["splits"].items() if entry.get("examples")]
        return (np.concatenate(vectors) if vectors else np.zeros((0, 1))), []
    files, problems = image_files([path])
    vectors, skipped = [], [f"{problem.path}: {problem.reason}" for problem in problems]
    for start in range(0, len(files), batch_size):
        for name in files[start:start + batch_size]:
            try:
                image = load_image(name, predictor.image_size)
            except ValueError as error:
                skipped.append(f"{name}: {error}")
                continue
            vectors.append(embed(image[None])[EMBEDDING][0])
    if not vectors:
        raise UserError(f"--ood: no photo could be read in {path} (expected a folder of photos or of shards)")
    return np.stack(vectors), skipped


def ood_report(trust: Trust, in_scores: np.ndarray, out_scores: np.ndarray) -> dict:
    return {"auroc": auroc(in_scores, out_scores), "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores, ACCEPT),
            "ood_rejected": float(np.mean(out_scores > trust.threshold)),
            "in_accepted": float(np.mean(in_scores <= trust.threshold)), "threshold": trust.threshold,
            "examples_in": int(len(in_scores)), "examples_out": int(len(out_scores))}


def ood_figure(in_scores: np.ndarray, out_scores: np.ndarray, threshold: float, path: str) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(0.0, max(float(np.max(in_scores)), float(np.max(out_scores)), threshold) * 1.05, 40)
    axis.hist(in_scores, bins=bins, alpha=0.6, density=True, label=f"test split ({len(in_scores)})")
    axis.hist(out_scores, bins=bins, alpha=0.6, density=True, label=f"--ood photos ({len(out_scores)})")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set_xlabel("out-of-distribution score (larger: less like the training data)")
    axis.set_ylabel("density")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def save_beside(trust: Trust, model: str, accuracy: Dict[str, float]) -> str:
    """Save ``trust`` beside ``model`` with the test accuracy on its card; '' when that folder is read-only."""
    trust.card["test_accuracy"] = accuracy
    trust.card["set"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    trust.card["model"] = os.path.basename(os.path.normpath(model))
    try:
        return save_trust(trust, model)
    except OSError as error:
        print(f"the calibration and threshold cannot be saved beside {model} ({error.strerror or error}): "
              "eval.predict and eval.app will not abstain for this model")
        return ""
