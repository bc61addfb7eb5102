"""Out-of-distribution scores compared, and open-set abstention measured on real photos. Not a test.

Writes one results file (default ``docs/results/ood.json``, with a description of the machine) from
which ``python -m docs.render`` renders the README's numbers. Two experiments:

1. **Candidates, demo model** (``runs/demo/model.keras``, trained on synthetic pictures): in
   distribution its test split; out of distribution the real photos of ``../shared`` and pictures
   that are not cars.
2. **Open set on real photos**: a model trained here on 10 of the 20 classes of the real photos
   (every other class in name order), measured on its own test split against the other 10 classes
   (unseen car models, among them other model years of known cars: the hard case) and against the
   pictures that are not cars.

Candidate scores (larger: less like the training data): the model head's maximum softmax
probability, maximum logit and energy (Liu et al. 2020); the Mahalanobis distance to the nearest
class mean with one shared covariance (Lee et al. 2018; Ledoit-Wolf shrinkage); the distance to
the k-th nearest L2-normalised training embedding for k = 1, 10, 50 (Sun et al. 2022); and the
larger of the k = 10 distance and the Mahalanobis distance, each divided by its 95th percentile on
the validation split (a photo far from either is out). Each with its
AUROC and the share of outside pictures accepted at 95% in-distribution acceptance; for the score
the project uses (k = 10), also the operating point of the threshold saved with the model (set on
the validation split).

Pictures that are not cars (made here, seeded): the synthetic generator's empty scenes (sky,
ground, buildings, no car), textures (noise, stripes, checks, gradients) and magnified patches of
the real photos.

The CPU configuration trains a small CNN from scratch on about 290 photos: it is weak, and the
numbers say what such a model reaches. The configuration to run on an accelerator is
``--backbone efficientnetv2_b0 --weights imagenet --image-size 224 --epochs 30``.

Usage: ``python -m benchmarks.bench_ood [--demo runs/demo/model.keras] [--work bench_out/ood]
[--results docs/results/ood.json] [--backbone custom_cnn] [--weights none] [--image-size 128] [--epochs 60]``
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
from typing import Dict, List

import numpy as np

from common.cli import command_parser, quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.bench_build import machine  # noqa: E402
from benchmarks.realphotos import PHOTOS  # noqa: E402
from common.trust import ACCEPT, K, auroc, fpr_at_tpr, knn_scores, l2_normalize, load_trust, spread_subsample  # noqa
from data_prep.build import build_dataset  # noqa: E402
from data_prep.options import BuildOptions  # noqa: E402
from data_prep.synthetic.draw import background  # noqa: E402
from eval.datasource import find_data, training_config  # noqa: E402
from eval.loading import keras_predict, load_predictor  # noqa: E402
from eval.run_data import collect  # noqa: E402
from eval.trust import EMBEDDING, folder_outputs  # noqa: E402
from training.config import config_from_dict  # noqa: E402
from training.trainer import fit  # noqa: E402

HEAD = "model"  # the head whose logits the logit-based candidates use
NOT_CARS = 300  # pictures that are not cars: a third each of scenes, textures and patches
KS = (1, 10, 50)
COMBINED = "kNN (k = 10) or Mahalanobis"  # the larger of the two, each over its validation 95th percentile


# --- pictures that are not cars ---------------------------------------------------------------------------------

def texture(rng, size: int = 256) -> Image.Image:
    kind = int(rng.integers(0, 4))
    y, x = np.mgrid[0:size, 0:size] / size
    colours = rng.integers(0, 256, (2, 3))
    if kind == 0:  # noise, smoothed to a random grain
        grain = int(rng.integers(1, 32))
        small = rng.integers(0, 256, (size // grain + 1, size // grain + 1, 3), dtype=np.uint8)
        return Image.fromarray(small).resize((size, size), Image.BILINEAR)
    if kind == 1:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.03, 0.3)
        mask = (np.sin((x * np.cos(angle) + y * np.sin(angle)) / period * 2 * np.pi) > 0)[..., None]
    elif kind == 2:  # checks
        cells = int(rng.integers(2, 16))
        mask = (((x * cells).astype(int) + (y * cells).astype(int)) % 2 == 1)[..., None]
    else:  # a gradient
        mask = (x * rng.uniform(0, 1) + y * rng.uniform(0, 1))[..., None] / 2
    return Image.fromarray((colours[0] * (1 - mask) + colours[1] * mask).astype(np.uint8))


def photo_patch(rng, photos: List[str]) -> Image.Image:
    """A random patch of 8–15% of a real photo's width, magnified: paint, glass, asphalt, sky."""
    with Image.open(photos[int(rng.integers(len(photos)))]) as image:
        image = image.convert("RGB")
        side = max(8, int(image.width * rng.uniform(0.08, 0.15)))
        left, top = int(rng.integers(0, image.width - side)), int(rng.integers(0, image.height - side))
        return image.crop((left, top, left + side, top + side)).resize((256, 256), Image.BICUBIC)


def not_cars(folder: str, photos: List[str], count: int = NOT_CARS, seed: int = 7) -> Dict[str, str]:
    """Write the pictures (once); ``{kind: folder}``."""
    rng = np.random.default_rng(seed)
    makers = {"empty scenes": lambda: background(int(rng.integers(240, 400)), int(rng.integers(180, 300)), rng)[0],
              "textures": lambda: texture(rng), "photo patches": lambda: photo_patch(rng, photos)}
    folders = {}
    for kind, make in makers.items():
        folders[kind] = os.path.join(folder, kind.replace(" ", "_"))
        if os.path.isdir(folders[kind]) and len(os.listdir(folders[kind])) == count // len(makers):
            continue
        os.makedirs(folders[kind], exist_ok=True)
        for index in range(count // len(makers)):
            make().save(os.path.join(folders[kind], f"{index:03d}.jpg"), quality=90)
    return folders


# --- the candidate scores ---------------------------------------------------------------------------------------

def feature_function(predictor):
    """``images → {"embedding", "logits"}``: the embedding and the ``HEAD`` head's logits (its dense
    layer's input times its weights), in one pass."""
    model = predictor.keras_model
    dense = model.get_layer(HEAD)
    kernel, bias = (np.asarray(weight, np.float64) for weight in dense.get_weights())
    serve = keras_predict(keras.Model(model.inputs, {EMBEDDING: model.get_layer(EMBEDDING).output,
                                                     "head_input": dense.input}), predictor.image_size,
                          predictor.pixels)

    def features(images):
        values = serve(images)
        return {EMBEDDING: np.reshape(values[EMBEDDING], (len(images), -1)),
                "logits": np.asarray(values["head_input"], np.float64) @ kernel + bias}

    return features


def split_features(predictor, features, data, split: str, config) -> Dict[str, np.ndarray]:
    result = collect(data.require_shards(), data.manifest, split, predictor.image_size, 32, features, config)
    return {**result["outputs"], "labels": result["labels"][HEAD]}


class Candidates:
    """Every candidate score, fitted on the training split's features."""

    def __init__(self, train: Dict[str, np.ndarray]):
        from sklearn.covariance import LedoitWolf

        self.reference = l2_normalize(train[EMBEDDING][spread_subsample(len(train[EMBEDDING]))])
        known = train["labels"] >= 0
        vectors, labels = train[EMBEDDING][known].astype(np.float64), train["labels"][known]
        self.means = np.stack([vectors[labels == c].mean(axis=0) for c in np.unique(labels)])
        centred = vectors - self.means[np.searchsorted(np.unique(labels), labels)]
        self.precision = LedoitWolf().fit(centred).precision_

    def mahalanobis(self, embeddings: np.ndarray) -> np.ndarray:
        vectors = np.asarray(embeddings, np.float64)
        distances = [np.einsum("nd,nd->n", (vectors - mean) @ self.precision, vectors - mean) for mean in self.means]
        return np.min(distances, axis=0)

    def calibrate(self, val: Dict[str, np.ndarray]) -> None:
        """The combination's scales: each part's 95th percentile on the validation split."""
        self.scales = (float(np.quantile(knn_scores(self.reference, val[EMBEDDING], K), ACCEPT)),
                       float(np.quantile(self.mahalanobis(val[EMBEDDING]), ACCEPT)))

    def scores(self, features: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        logits = features["logits"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        energy = -(logits.max(axis=1) + np.log(np.exp(shifted).sum(axis=1)))
        found = {"max softmax probability": -softmax.max(axis=1), "max logit": -logits.max(axis=1),
                 "energy": energy, "Mahalanobis": self.mahalanobis(features[EMBEDDING])}
        for k in KS:
            found[f"kNN distance, k = {k}"] = knn_scores(self.reference, features[EMBEDDING], k)
        found[COMBINED] = np.maximum(found[f"kNN distance, k = {K}"] / self.scales[0],
                                     found["Mahalanobis"] / self.scales[1])
        return found


def compare(candidates: Candidates, inside: Dict[str, np.ndarray], outside: Dict[str, Dict[str, np.ndarray]]):
    """Per candidate and outside set: AUROC and the share accepted at 95% in-distribution acceptance."""
    in_scores = candidates.scores(inside)
    out_scores = {name: candidates.scores(features) for name, features in outside.items()}
    rows = []
    for candidate, scores in in_scores.items():
        row = {"score": candidate}
        for name, found in out_scores.items():
            row[name] = {"auroc": auroc(scores, found[candidate]),
                         "fpr_at_95_tpr": fpr_at_tpr(scores, found[candidate], ACCEPT)}
        rows.append(row)
    return rows


def operating_point(threshold: float, inside: np.ndarray, outside: Dict[str, np.ndarray], reference) -> dict:
    """The saved threshold applied: the share of the test split accepted and of each outside set rejected."""
    point = {"threshold": threshold, "in_accepted": float(np.mean(knn_scores(reference, inside, K) <= threshold))}
    for name, embeddings in outside.items():
        point[name] = {"rejected": float(np.mean(knn_scores(reference, embeddings, K) > threshold)),
                       "examples": int(len(embeddings))}
    return point


def measure(model_path: str, outside_folders: Dict[str, str]) -> dict:
    """Every candidate for one model: its test split against each outside folder (photos or shards)."""
    predictor = load_predictor(model_path)
    data, config = find_data(model_path), training_config(model_path)
    features = feature_function(predictor)
    train = split_features(predictor, features, data, "train", config)
    test = split_features(predictor, features, data, "test", config)
    val = split_features(predictor, features, data, "val", config)
    outside = {name: folder_outputs(features, folder, predictor.image_size, 32, config)[0]
               for name, folder in outside_folders.items()}
    candidates = Candidates(train)
    candidates.calibrate(val)
    trust = load_trust(model_path)
    result = {"model": model_path, "examples": {"train": int(len(train["labels"])), "test": int(len(test["labels"])),
                                                **{name: int(len(value["logits"])) for name, value in outside.items()}},
              "candidates": compare(candidates, test, outside)}
    if trust is not None:
        result["saved_threshold"] = operating_point(trust.threshold, test[EMBEDDING],
                                                    {name: value[EMBEDDING] for name, value in outside.items()},
                                                    trust.reference)
        result["saved_threshold"]["set_on"] = trust.card.get("threshold_set_on")
    return result


# --- the open-set model ----------------------------------------------------------------------------------------

def class_tree(photos: str, classes: List[str], root: str) -> None:
    """The real photos of ``classes`` in the Kaggle class-folder layout (links, not copies)."""
    if os.path.isdir(root):
        shutil.rmtree(root)
    for split in ("train", "test"):
        for name in classes:
            source = os.path.join(photos, "car_data", "car_data", split, name)
            target = os.path.join(root, "car_data", "car_data", split, name)
            os.makedirs(target)
            for file in sorted(os.listdir(source)):
                os.symlink(os.path.abspath(os.path.join(source, file)), os.path.join(target, file))


def open_set_model(photos: str, work: str, args) -> tuple:
    """Train on every other class (name order), or reuse that run with ``--reuse``; ``(model path, known
    classes, unseen tree, seconds, metrics)``."""
    classes = sorted(os.listdir(os.path.join(photos, "car_data", "car_data", "train")))
    known, unseen = classes[0::2], classes[1::2]
    class_tree(photos, known, os.path.join(work, "known"))
    class_tree(photos, unseen, os.path.join(work, "unseen"))
    out = os.path.join(work, "run")
    if args.reuse and os.path.exists(os.path.join(out, "metrics.json")):
        with open(os.path.join(out, "metrics.json")) as handle:
            metrics = json.load(handle)
        return os.path.join(out, "model.keras"), known, os.path.join(work, "unseen"), metrics["seconds"], metrics
    shards = os.path.join(work, "known_shards")
    if os.path.isdir(shards):
        shutil.rmtree(shards)
    build_dataset(BuildOptions(dataset="stanford_cars", root=os.path.join(work, "known"), out=shards,
                               split="stratified", val_fraction=0.15, test_fraction=0.2, max_side=2 * args.image_size,
                               progress=False))
    config = config_from_dict({
        "name": "open_set",
        "data": {"shards": shards, "heads": ["make", "model", "year", "type"], "image_size": args.image_size,
                 "batch_size": 32, "augment": "basic"},
        "model": {"backbone": args.backbone, "weights": args.weights, "head": "linear", "dropout": 0.3},
        "loss": {"name": "sparse_categorical_crossentropy"},
        "optimizer": {"name": "adam", "learning_rate": args.learning_rate},
        "schedule": {"name": "cosine", "warmup_epochs": 2},
        "training": {"epochs": args.epochs, "monitor": "val_model_accuracy", "verbose": 0}})
    started = time.perf_counter()
    metrics = fit(config, out, overwrite=True)
    metrics["seconds"] = time.perf_counter() - started
    with open(os.path.join(out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=1)
    return os.path.join(out, "model.keras"), known, os.path.join(work, "unseen"), metrics["seconds"], metrics


def main(argv=None) -> int:
    parser = command_parser("python -m benchmarks.bench_ood", __doc__)
    parser.add_argument("--demo", default="runs/demo/model.keras", help="the demo model (python -m training.fit "
                        "--config demo.yaml writes it)")
    parser.add_argument("--photos", default=PHOTOS, help="the real photos (Kaggle class-folder layout, labels.csv)")
    parser.add_argument("--work", default="bench_out/ood")
    parser.add_argument("--results", default="docs/results/ood.json")
    parser.add_argument("--backbone", default="custom_cnn")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--reuse", action="store_true", help="measure the open-set model of an earlier run again")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.photos, "labels.csv")):
        raise SystemExit(f"--photos: no real photos at {args.photos} (labels.csv missing)")
    if not os.path.exists(args.demo):
        raise SystemExit(f"--demo: {args.demo} does not exist; train it first: python -m training.fit --config demo.yaml")
    os.makedirs(args.work, exist_ok=True)
    photos = sorted(os.path.join(folder, name) for folder, _, names in os.walk(args.photos) for name in names
                    if name.endswith(".jpg"))
    outside = not_cars(os.path.join(args.work, "not_cars"), photos)
    results = {"machine": machine(), "date": datetime.date.today().isoformat(), "command": " ".join(
        ["python -m benchmarks.bench_ood"] + (argv if argv is not None else sys.argv[1:])),
        "not_cars": {kind: len(os.listdir(folder)) for kind, folder in outside.items()}}
    print(f"1/2 candidates on the demo model {args.demo}")
    results["demo"] = measure(args.demo, {"real car photos": args.photos, **outside})
    print("2/2 open set: training on 10 of the 20 classes of the real photos")
    model, known, unseen, seconds, metrics = open_set_model(args.photos, args.work, args)
    results["open_set"] = {"known_classes": known, "training_seconds": round(seconds),
                           "configuration": {"backbone": args.backbone, "weights": args.weights,
                                             "image_size": args.image_size, "epochs": args.epochs},
                           "test_accuracy": {head: value["accuracy"] for head, value in metrics["heads"].items()},
                           **measure(model, {"unseen car models": unseen, **outside})}
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results + ".partial", "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(args.results + ".partial", args.results)
    for name in ("demo", "open_set"):
        print(f"\n{name}:")
        for row in results[name]["candidates"]:
            print(f"  {row['score']:<26} " + "  ".join(f"{key}: {value['auroc']:.3f}/{value['fpr_at_95_tpr']:.3f}"
                                                      for key, value in row.items() if key != "score"))
    print(f"\nwritten: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
