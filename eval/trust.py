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
from common.trust import ACCEPT, OOD_SCORE, Trust, auroc, fpr_at_tpr, make_trust, save_trust
from data_prep.manifest import MANIFEST, data_card, load_manifest
from eval.datasource import DataSource
from eval.figures import pyplot, save_figure
from eval.images import image_files, load_image
from eval.loading import finite_outputs
from eval.metrics import calibration
from eval.retrieval import embedder
from eval.run_data import collect

EMBEDDING = "embedding"  # the layer every model of models.build names so (retrieval uses it too)


def split_outputs(predictor, source: DataSource, split: str, batch_size: int, config) -> Dict[str, object]:
    """Probabilities per head and embeddings of every image of ``split``, from one forward pass."""
    both = embedder(predictor, EMBEDDING, heads=True)
    return collect(source.require_shards(), source.manifest, split, predictor.image_size, batch_size, both, config)


def heads_and_embedding(predictor):
    """``images → {head: probabilities, "embedding": [N, D]}`` in one forward pass; ``None`` for an
    export or a model without an ``embedding`` layer."""
    if predictor.keras_model is None:
        return None
    try:
        return finite_outputs(predictor.path, embedder(predictor, EMBEDDING, heads=True))
    except UserError:
        return None


def trusted_predict(predictor, trust: Optional[Trust]):
    """``images → {head: calibrated probabilities, "ood_score": [N]}`` in one forward pass: a Keras
    model's heads and embedding, calibrated and scored here; an export's own outputs, when it applies
    its trust inside its graph. Without a trust: the predictor's probabilities as they are (no score)."""
    if trust is None:
        return predictor.predict
    if trust.in_graph:
        return predictor.scored
    both = heads_and_embedding(predictor)
    if both is None:  # an export without the trust inside, or a model without an embedding layer
        return lambda images: trust.calibrated(predictor.predict(images))

    def predict(images):
        values = both(images)
        probs = trust.calibrated({head: values[head] for head in predictor.heads})
        probs[OOD_SCORE] = trust.scores(values[EMBEDDING])
        return probs

    return predict


def build_trust(predictor, source: DataSource, config, batch_size: int, val_split: str = "val",
                fit_split: str = "train") -> Tuple[Optional[Trust], str]:
    """``(trust, "")``, or ``(None, why not)`` for a model without the layers it needs or data without
    a validation split."""
    if predictor.trust is not None:
        set_on = predictor.trust.card.get("threshold_set_on")
        return None, (f"this export applies the calibration and threshold set on {set_on} inside (its probabilities "
                      "are calibrated already); set them anew from the .keras model")
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
    """Embeddings of the photos of a folder (or of every record of a shards folder), and what was skipped."""
    outputs, skipped = folder_outputs(embedder(predictor, EMBEDDING), path, predictor.image_size, batch_size, config)
    return outputs[EMBEDDING], skipped


def folder_outputs(function, path: str, image_size: int, batch_size: int, config) -> Tuple[Dict[str, np.ndarray],
                                                                                             List[str]]:
    """``function``'s outputs for every photo of a folder (or every record of a shards folder, all its
    splits), and the photos skipped as unreadable."""
    if fs.exists(fs.join(path, MANIFEST)):
        manifest = load_manifest(path)
        parts = [collect(path, manifest, split, image_size, batch_size, function, config)["outputs"]
                 for split, entry in manifest["splits"].items() if entry.get("examples")]
        if not parts:
            raise UserError(f"--ood: the shards at {path} hold no records")
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}, []
    files, problems = image_files([path])
    found: Dict[str, list] = {}
    skipped = [f"{problem.path}: {problem.reason}" for problem in problems]
    for start in range(0, len(files), batch_size):
        images = []
        for name in files[start:start + batch_size]:
            try:
                images.append(load_image(name, image_size))
            except ValueError as error:
                skipped.append(f"{name}: {error}")
        for group in same_size_groups(images):
            for name, value in function(group).items():
                found.setdefault(name, []).append(np.asarray(value))
    if not found:
        raise UserError(f"--ood: no photo could be read in {path} (expected a folder of photos or of shards)")
    return {name: np.concatenate(values) for name, values in found.items()}, skipped


def same_size_groups(images: List[np.ndarray]) -> List[np.ndarray]:
    """The images stacked into batches of equal size, in their order (a batch per run of one size)."""
    groups: List[List[np.ndarray]] = []
    for image in images:
        if groups and groups[-1][0].shape == image.shape:
            groups[-1].append(image)
        else:
            groups.append([image])
    return [np.stack(group) for group in groups]


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
