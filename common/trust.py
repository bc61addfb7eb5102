"""What a model can back: an out-of-distribution score with its threshold, and calibrated probabilities.

Saved beside the model as ``<model>.trust.json`` (temperatures, threshold, the model card) and
``<model>.trust.npy`` (the reference: L2-normalised penultimate embeddings of at most
:data:`MAX_REFERENCE` training images, float16), so that ``eval.predict``, ``eval.app`` and exports
use them without the shards.

* **Score**: the Euclidean distance from a photo's L2-normalised embedding to its ``k``-th nearest
  reference embedding (Sun et al. 2022, "Out-of-distribution detection with deep nearest
  neighbors"); larger is less like the training data. The threshold accepts :data:`ACCEPT` of the
  validation photos.
* **Calibration**: one temperature per head (Guo et al. 2017) fitted on the validation split by
  minimising the negative log-likelihood; probabilities become ``softmax(log p / T)``.

NumPy only: every floor can use it.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Dict, Optional, Sequence

import numpy as np

from common import fs
from common.errors import UserError

OOD_SCORE = "ood_score"  # the output (and prediction field) carrying the score
K = 10  # the k-th nearest reference embedding
ACCEPT = 0.95  # share of in-distribution (validation) photos the threshold accepts
MAX_REFERENCE = 2000  # training embeddings kept as the reference (a spread subsample)
TEMPERATURE_RANGE = (0.05, 20.0)
FLOOR = float(np.finfo(np.float32).tiny)  # probabilities are floored here before the log (exports do the same)
VERSION = 1


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def spread_subsample(count: int, limit: int = MAX_REFERENCE) -> np.ndarray:
    """Indices of at most ``limit`` of ``count`` items, evenly spread (the records are in shard order)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def knn_scores(reference: np.ndarray, embeddings: np.ndarray, k: int = K, batch: int = 512) -> np.ndarray:
    """Distance from each (normalised) embedding to its ``k``-th nearest reference embedding."""
    reference = np.asarray(reference, dtype=np.float32)
    k = min(k, len(reference))
    scores = []
    for start in range(0, len(embeddings), batch):
        chunk = l2_normalize(embeddings[start:start + batch])
        squared = np.maximum(2.0 - 2.0 * chunk @ reference.T, 0.0)  # both sides have unit length
        scores.append(np.sqrt(np.partition(squared, k - 1, axis=1)[:, k - 1]))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the same ranking, confidence scaled."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = apply_temperature(probs, temperature)
    return float(-np.mean(np.log(np.clip(scaled[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (unknown labels, < 0, left
    out); 1.0 when no label is known."""
    from scipy.optimize import minimize_scalar

    known = np.asarray(labels) >= 0
    if not known.any():
        return 1.0
    probs, labels = np.asarray(probs)[known], np.asarray(labels)[known]
    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    result = minimize_scalar(lambda log_t: negative_log_likelihood(probs, labels, float(np.exp(log_t))),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that an out-of-distribution photo scores above an in-distribution one (ties: half)."""
    from scipy.stats import rankdata

    scores = np.concatenate([in_scores, out_scores])
    ranks = rankdata(scores)
    out_ranks = ranks[len(in_scores):].sum()
    n_in, n_out = len(in_scores), len(out_scores)
    return float((out_ranks - n_out * (n_out + 1) / 2) / (n_in * n_out))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = ACCEPT) -> float:
    """Share of out-of-distribution photos accepted by the threshold that accepts ``tpr`` of the
    in-distribution ones."""
    threshold = float(np.quantile(in_scores, tpr))
    return float(np.mean(np.asarray(out_scores) <= threshold))


@dataclasses.dataclass
class Trust:
    """The score's reference and threshold, the temperatures, and what the model was trained on."""

    reference: np.ndarray  # [N, D] float16, L2-normalised
    threshold: float
    temperatures: Dict[str, float]
    card: dict  # dataset, synthetic, classes per head, test accuracy, date
    k: int = K
    accept: float = ACCEPT
    score: str = "distance to the k-th nearest of the training embeddings (L2-normalised)"
    in_graph: bool = False  # an export: its outputs are calibrated already and carry the score
    kept: int = 0  # an export's reference size (its reference lives in its graph)


    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        if self.in_graph:
            raise ValueError("an export computes its scores inside its graph (output 'ood_score')")
        return knn_scores(self.reference, embeddings, self.k)

    def calibrated(self, probs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.in_graph:
            return dict(probs)
        return {head: apply_temperature(value, self.temperatures.get(head, 1.0)) for head, value in probs.items()}

    def describe(self) -> dict:
        return {"version": VERSION, "score": self.score, "k": self.k, "accept": self.accept,
                "threshold": self.threshold, "reference_size": int(len(self.reference)) or self.kept,
                "temperatures": self.temperatures, "card": self.card}

    @classmethod
    def in_export(cls, description: dict) -> "Trust":
        """The trust an export applies inside its graph, from the description saved with it."""
        return cls(reference=np.zeros((0, 0), np.float32), threshold=float(description["threshold"]),
                   temperatures={str(k): float(v) for k, v in description["temperatures"].items()},
                   card=dict(description["card"]), k=int(description["k"]), accept=float(description["accept"]),
                   score=str(description["score"]), in_graph=True, kept=int(description.get("reference_size", 0)))


def make_trust(reference: np.ndarray, probs: Dict[str, np.ndarray], labels: Dict[str, np.ndarray],
               embeddings: np.ndarray, card: dict, set_on: str) -> Trust:
    """The trust of a model from its training embeddings (``reference``, any number: a spread subsample
    is kept) and its validation outputs: the threshold accepts :data:`ACCEPT` of the validation
    photos, the temperatures fit their labels."""
    kept = l2_normalize(np.asarray(reference)[spread_subsample(len(reference))])
    trust = Trust(reference=kept.astype(np.float16).astype(np.float32), threshold=0.0,
                  temperatures={head: fit_temperature(probs[head], labels[head]) for head in probs if head in labels},
                  card={**card, "threshold_set_on": set_on})
    trust.threshold = threshold_for(trust.scores(embeddings))
    return trust


def trust_paths(model_path: str) -> tuple:
    """``(<model>.trust.json, <model>.trust.npy)`` beside a model file (inside a SavedModel folder)."""
    base = fs.join(model_path.rstrip("/"), "trust") if fs.isdir(model_path) else model_path.rsplit(".", 1)[0] + \
        ".trust"
    return base + ".json", base + ".npy"


def save_trust(trust: Trust, model_path: str) -> str:
    import io

    description, reference = trust_paths(model_path)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(trust.reference, dtype=np.float16))
    fs.write_bytes_atomic(reference, buffer.getvalue())
    fs.write_text_atomic(description, json.dumps(trust.describe(), indent=1))
    return description


def load_trust(model_path: str) -> Optional[Trust]:
    """The trust saved beside ``model_path``; ``None`` when there is none; one line when it is damaged."""
    import io

    description, reference = trust_paths(model_path)
    if not fs.exists(description):
        return None
    try:
        info = json.loads(fs.read_text(description))
        vectors = np.load(io.BytesIO(fs.read_bytes(reference)), allow_pickle=False)
        return Trust(reference=vectors.astype(np.float32), threshold=float(info["threshold"]),
                     temperatures={str(k): float(v) for k, v in info["temperatures"].items()}, card=info["card"],
                     k=int(info["k"]), accept=float(info["accept"]), score=str(info["score"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{description} (or {reference}) is damaged ({type(error).__name__}: {error}); run "
                        "python -m eval.test on the model again to write it anew") from None


def threshold_for(scores: Sequence[float], accept: float = ACCEPT) -> float:
    """The score below which ``accept`` of ``scores`` lie."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), accept))
