"""Metrics from predicted probabilities and labels (NumPy, scikit-learn and training's top-k rule; no
model needed).

Per head: top-1/top-5 accuracy, loss (mean negative log-likelihood), macro and weighted
precision/recall/F1, per-class table with the top confusions, the most confused pairs, and
calibration (expected calibration error, reliability bins). Across heads: how often the predicted
model belongs to the predicted make, and make accuracy when make is derived from the model head.
Unknown labels (-1) are left out.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from training.metrics import top_k_hits

CALIBRATION_BINS = 15


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of labels ranked below ``k``, by training's rule (:func:`training.metrics.top_k_hits`:
    ties go to the lower class id, so k = 1 is argmax): both report the same top-5 even for saturated
    (tied) outputs."""
    hits = top_k_hits(np.asarray(labels, np.int32), np.asarray(probs), k)
    return float(np.mean(keras.ops.convert_to_numpy(hits)))


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error and the reliability diagram's bins (confidence vs accuracy)."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            accuracy, mean_confidence = float(correct[members].mean()), float(confidence[members].mean())
            ece += members.mean() * abs(accuracy - mean_confidence)
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(members.sum()),
                         "accuracy": accuracy, "confidence": mean_confidence})
    return {"ece": float(ece), "bins": rows}


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def confused_pairs(matrix: np.ndarray, names: Sequence[str], limit: int = 20) -> List[dict]:
    """The largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:limit]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, off.shape)
        if off[true, predicted] == 0:
            break
        pairs.append({"true": names[true], "predicted": names[predicted], "count": int(off[true, predicted]),
                      "share": float(off[true, predicted] / max(1, matrix[true].sum()))})
    return pairs


def per_class(matrix: np.ndarray, names: Sequence[str], precision, recall, f1, support) -> List[dict]:
    rows = []
    for index, name in enumerate(names):
        wrong = matrix[index].copy()
        wrong[index] = 0
        top = [f"{names[j]} ({wrong[j]})" for j in np.argsort(wrong)[::-1][:3] if wrong[j] > 0]
        rows.append({"class_id": index, "name": name, "support": int(support[index]),
                     "precision": float(precision[index]), "recall": float(recall[index]), "f1": float(f1[index]),
                     "top_confusions": "; ".join(top)})
    return rows


def head_metrics(probs: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> Optional[dict]:
    """Everything ``eval.test`` reports for one head (``probs`` [N, C], ``labels`` [N], -1 unknown);
    None when no example has a known label."""
    known = labels >= 0
    probs, labels = probs[known], labels[known]
    classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    ids = list(range(classes))
    if not len(labels):
        return None  # no example of this head has a known label
    result = {"examples": int(len(labels)), "classes": classes, "accuracy": float(np.mean(predicted == labels)),
              "top5": top_k_accuracy(probs, labels, 5) if classes > 5 else None,  # None: trivially 1
              "loss": float(np.mean(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=ids, average=average, zero_division=0)
        result[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(labels, predicted, labels=ids, average=None, zero_division=0)
    matrix = confusion_matrix(labels, predicted, classes)
    result["per_class"] = per_class(matrix, names, p, r, f, s)
    result["confused_pairs"] = confused_pairs(matrix, names)
    result["calibration"] = calibration(probs, labels)
    result["confusion_matrix"] = matrix
    return result


def derived_probs(model_probs: np.ndarray, mapping: Sequence[int], classes: int) -> np.ndarray:
    """``[N, classes]``: the model head's probabilities summed over the models of each class."""
    mapping = np.asarray(mapping)
    valid = mapping >= 0
    derived = np.zeros((len(model_probs), classes))
    np.add.at(derived.T, mapping[valid], model_probs[:, valid].T)
    return derived


def hierarchy_metrics(probs: Dict[str, np.ndarray], labels: Dict[str, np.ndarray],
                      mappings: Optional[Dict[str, Sequence[int]]]) -> Dict[str, dict]:
    """For each head the model class determines (make; type and year where the dataset fixes them):
    how often the predicted model belongs to the predicted class, and that head's accuracy when it
    is derived from the model head's probabilities, next to its own head's accuracy."""
    if not mappings or "model" not in probs:
        return {}
    predicted_model = probs["model"].argmax(axis=1)
    result = {}
    for head, mapping in mappings.items():
        known = labels.get(head, np.zeros(0)) >= 0
        if head not in probs or not known.any():
            continue
        mapping = np.asarray(mapping)
        own = probs[head].argmax(axis=1)
        derived = derived_probs(probs["model"], mapping, probs[head].shape[1]).argmax(axis=1)
        result[head] = {"model_within_predicted": float(np.mean(mapping[predicted_model] == own)),
                        "accuracy_from_model_head": float(np.mean(derived[known] == labels[head][known])),
                        "accuracy_own_head": float(np.mean(own[known] == labels[head][known]))}
    return result
