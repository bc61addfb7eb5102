"""``python -m eval.retrieval --model PATH [--k 13] [--metric manhattan|euclidean|cosine] [--normalize l2]``.

Image retrieval as in report 003: embeddings from the layer before the heads (``embedding``) for the
training split (the gallery) and the test split (the queries), optionally L2-normalised; each query
takes the majority class of its k nearest gallery images (ties: the lower class id, as
scikit-learn's ``KNeighborsClassifier``). Several ``--k`` values are scored from one neighbour
search. Writes ``metrics.json``, ``report.md``, ``neighbours.csv`` and a figure of queries with
their nearest neighbours.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support
from sklearn.neighbors import NearestNeighbors

from common import fs
from common.cli import command_parser, run_main
from common.errors import UserError
from eval.datasource import check_heads, class_names, find_data, output_folder, parent, training_config
from eval.figures import pyplot, save_figure
from eval.loading import keras_predict, load_keras_model
from eval.report import markdown_table, save_json
from eval.run_data import check_split, collect, images_by_id

DISTANCES = ("manhattan", "euclidean", "cosine")
NORMALIZATIONS = ("l2", "none")
SHOWN_NEIGHBOURS = 5


REPORT_FILES = ("report.md", "metrics.json", "neighbours.csv", "figures")  # what a retrieval report holds


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def neighbours(gallery: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Indices ``[queries, k]`` of the nearest gallery vectors, nearest first (exact, brute force)."""
    index = NearestNeighbors(n_neighbors=min(k, len(gallery)), metric=metric, algorithm="brute")
    return index.fit(gallery).kneighbors(queries, return_distance=False)


def others(nearest: np.ndarray, query_ids: Sequence[str], gallery_ids: Sequence[str], k: int) -> np.ndarray:
    """The first ``k`` neighbours of each query that are not the query's own image (by id)."""
    if nearest.shape[1] == k:
        return nearest
    return np.asarray([[j for j in row if gallery_ids[j] != query_ids[i]][:k] for i, row in enumerate(nearest)])


def vote(neighbour_labels: np.ndarray, classes: int) -> np.ndarray:
    """Majority class per row; ties go to the lowest class id."""
    counts = np.zeros((len(neighbour_labels), classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(neighbour_labels)), neighbour_labels.shape[1]),
                       neighbour_labels.ravel()), 1)
    return counts.argmax(axis=1)


def scores(labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict:
    result = {"examples": int(len(labels)), "classes": classes, "accuracy": float(np.mean(predicted == labels))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=list(range(classes)), average=average,
                                                     zero_division=0)
        result[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return result


def embedder(predictor, layer: str, heads: bool = False):
    """``images → {"embedding": [N, D]}`` through the named layer, with the model's own preprocessing;
    with ``heads``, every head's probabilities too, from the same forward pass."""
    model = predictor.keras_model
    try:
        output = model.get_layer(layer).output
    except ValueError:
        names = [item.name for item in model.layers][-8:]
        raise UserError(f"--layer: the model has no layer {layer!r}; its last layers are {', '.join(names)}") from None
    outputs = {"embedding": output, **(dict(zip(model.output_names, model.outputs)) if heads else {})}
    serve = keras_predict(keras.Model(model.inputs, outputs), predictor.image_size, predictor.pixels)

    def embed(images):
        values = dict(serve(images))
        values["embedding"] = np.reshape(values["embedding"], (len(images), -1))
        return values

    return embed


def embed_split(predictor, embed, source, split: str, head: str, batch_size: int, config, keep: int = 0):
    result = collect(source.require_shards(), source.manifest, split, predictor.image_size, batch_size, embed, config,
                     keep_images=keep)
    labels = result["labels"][head]
    known = labels >= 0
    images = result["images"]
    if images is not None:  # keep the kept images aligned with the known-label examples
        images = images[known[:len(images)]]
    ids = [i for i, ok in zip(result["ids"], known) if ok]
    return result["outputs"]["embedding"][known], labels[known], ids, images


def retrieve(model: str, data: Optional[str] = None, ks: Sequence[int] = (13,), metric: str = "manhattan",
             normalize: str = "l2", head: Optional[str] = None, fit_split: str = "train", split: str = "test",
             layer: str = "embedding", batch_size: int = 32, out: Optional[str] = None, examples: int = 6) -> dict:
    _check_choices(ks, metric, normalize)
    predictor = load_keras_model(model)
    source = find_data(model, data)
    heads = check_heads(predictor.heads, source.manifest)
    head = head or ("model" if "model" in heads else heads[0])
    if head not in heads:
        raise UserError(f"--head: the model has no head {head!r}; it has {', '.join(heads)}")
    for name in (fit_split, split):
        check_split(source.manifest, name)
    out = output_folder(out, default_out(model, split), REPORT_FILES, "eval.retrieval")
    config, embed = training_config(model), embedder(predictor, layer)
    gallery, gallery_labels, gallery_ids, _ = embed_split(predictor, embed, source, fit_split, head, batch_size, config)
    queries, labels, query_ids, query_images = embed_split(predictor, embed, source, split, head, batch_size, config,
                                                           keep=examples)
    if normalize == "l2":
        gallery, queries = l2_normalize(gallery), l2_normalize(queries)
    same = split == fit_split  # each query is in the gallery: leave it out of its own neighbours
    if same:
        print(f"--split {split} is the gallery's split: each query's own image is left out of its neighbours")
    ks = used_ks(ks, len(gallery) - same, fit_split)
    nearest = others(neighbours(gallery, queries, max(ks) + same, metric), query_ids, gallery_ids, max(ks))
    classes = source.manifest["heads"][head]["num_classes"]
    by_k = [{"k": k, **scores(labels, vote(gallery_labels[nearest[:, :k]], classes), classes)} for k in ks]
    names = class_names(source.manifest, [head])[head]
    predicted = vote(gallery_labels[nearest[:, :ks[0]]], classes)
    settings = {"k": list(ks), "metric": metric, "normalize": normalize, "layer": layer, "head": head,
                "gallery_split": fit_split, "gallery_size": int(len(gallery)), "dimensions": int(gallery.shape[1]),
                "leave_one_out": same}
    metrics = {"out": out, "model": model, "split": split, "retrieval": settings, "heads": {head: by_k[0]}, "by_k": by_k,
               "examples": int(len(labels))}
    write_outputs(out, metrics, names, labels, predicted, nearest, query_ids, gallery_ids, gallery_labels)
    shown = min(examples, 0 if query_images is None else len(query_images))
    if shown:
        wanted = {gallery_ids[j] for row in nearest[:shown, :SHOWN_NEIGHBOURS] for j in row}
        found = images_by_id(source.require_shards(), source.manifest, fit_split, predictor.image_size, wanted, config)
        neighbours_figure(query_images[:shown], labels[:shown], nearest[:shown, :SHOWN_NEIGHBOURS], gallery_ids,
                          gallery_labels, found, names, fs.join(out, "figures", "neighbours.png"))
    return metrics


def _check_choices(ks: Sequence[int], metric: str, normalize: str) -> None:
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k: expected one or more values of 1 or more (received {', '.join(map(str, ks))})")
    if metric not in DISTANCES:
        raise UserError(f"--metric: expected one of {', '.join(DISTANCES)} (received {metric!r})")
    if normalize not in NORMALIZATIONS:
        raise UserError(f"--normalize: expected one of {', '.join(NORMALIZATIONS)} (received {normalize!r})")


def used_ks(ks: Sequence[int], gallery_size: int, gallery_split: str) -> List[int]:
    """The k values a gallery of ``gallery_size`` allows (a larger k is that size), said in one line."""
    used = list(dict.fromkeys(min(k, gallery_size) for k in ks))  # the order given: the first k votes
    larger = sorted(k for k in set(ks) if k > gallery_size)
    if larger:
        print(f"--k {', '.join(map(str, larger))}: more than the {gallery_size} {gallery_split} images of the "
              f"gallery; k={gallery_size} is used instead")
    return used


def default_out(model_path: str, split: str) -> str:
    folder = model_path.rstrip("/") if fs.isdir(model_path) else parent(model_path)
    stem = os.path.splitext(os.path.basename(os.path.normpath(model_path)))[0]
    return fs.join(folder, f"retrieval_{stem}_{split}")


def write_outputs(out: str, metrics: dict, names: List[str], labels, predicted, nearest, query_ids, gallery_ids,
                  gallery_labels) -> None:
    fs.makedirs(fs.join(out, "figures"))
    settings = metrics["retrieval"]
    rows = [{"k": row["k"], "accuracy": row["accuracy"], "macro_precision": row["macro"]["precision"],
             "macro_recall": row["macro"]["recall"], "macro_f1": row["macro"]["f1"],
             "weighted_precision": row["weighted"]["precision"], "weighted_recall": row["weighted"]["recall"],
             "weighted_f1": row["weighted"]["f1"]} for row in metrics["by_k"]]
    text = [f"# Retrieval: {os.path.basename(os.path.normpath(metrics['model']))} on {metrics['split']}", "",
            f"{metrics['examples']} queries against {settings['gallery_size']} {settings['gallery_split']} images; "
            f"{settings['dimensions']}-dimensional '{settings['layer']}' embeddings, {settings['normalize']} "
            f"normalisation, {settings['metric']} distance, majority vote on the {settings['head']} class"
            + (" (each query's own image left out)." if settings.get("leave_one_out") else "."), "",
            markdown_table(rows, list(rows[0])), "", "![neighbours](figures/neighbours.png)", ""]
    fs.write_text_atomic(fs.join(out, "report.md"), "\n".join(text))
    table = pd.DataFrame({
        "id": query_ids, "true": [names[i] for i in labels], "predicted": [names[i] for i in predicted],
        "neighbours": [" ".join(gallery_ids[j] for j in row[:SHOWN_NEIGHBOURS]) for row in nearest],
        "neighbour_classes": ["; ".join(names[gallery_labels[j]] for j in row[:SHOWN_NEIGHBOURS]) for row in nearest]})
    fs.write_text_atomic(fs.join(out, "neighbours.csv"), table.to_csv(index=False))
    save_json(fs.join(out, "metrics.json"), metrics)


def neighbours_figure(images, labels, nearest, gallery_ids, gallery_labels, found: Dict[str, np.ndarray],
                      names: List[str], path: str) -> None:
    """One row per query: the query, then its nearest gallery images (green: same class, red: other)."""
    plt = pyplot()
    rows, columns = len(images), 1 + nearest.shape[1]
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
    for row in range(rows):
        cells = [(images[row], f"query\n{names[labels[row]]}", "black")]
        for j in nearest[row]:
            same = gallery_labels[j] == labels[row]
            cells.append((found.get(gallery_ids[j]), names[gallery_labels[j]], "tab:green" if same else "tab:red"))
        for axis, (image, title, colour) in zip(axes[row], cells):
            if image is not None:
                axis.imshow(np.asarray(image, np.uint8))
            axis.set_title(title[:38], fontsize=7, color=colour)
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2)
    figure.tight_layout()
    save_figure(figure, path)


def print_retrieval(metrics: dict, out: str) -> None:
    settings = metrics["retrieval"]
    print(f"\nretrieval: {metrics['examples']} {metrics['split']} queries, {settings['gallery_size']} "
          f"{settings['gallery_split']} images, {settings['metric']}, {settings['normalize']}")
    print(f"  {'k':>4}{'accuracy':>10}{'macro F1':>10}{'weighted P':>12}{'weighted R':>12}{'weighted F1':>13}")
    for row in metrics["by_k"]:
        print(f"  {row['k']:>4}{row['accuracy']:>10.4f}{row['macro']['f1']:>10.4f}{row['weighted']['precision']:>12.4f}"
              f"{row['weighted']['recall']:>12.4f}{row['weighted']['f1']:>13.4f}")
    print(f"  report: {fs.join(out, 'report.md')}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.retrieval", __doc__)
    parser.add_argument("--model", required=True, help=".keras or .h5 (retrieval needs the model's layers)")
    parser.add_argument("--data", help="shards folder with manifest.json (default: next to the model)")
    parser.add_argument("--k", type=int, nargs="+", default=[13], help="neighbours; several values: one search")
    parser.add_argument("--metric", choices=DISTANCES, default="manhattan")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="l2")
    parser.add_argument("--head", help="the labels voted on (default: model)")
    parser.add_argument("--fit-split", default="train", help="the gallery split (default: train)")
    parser.add_argument("--split", default="test", help="the query split (default: test)")
    parser.add_argument("--layer", default="embedding")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--examples", type=int, default=6, help="queries shown in the figure")
    parser.add_argument("--out", help="report folder (default: retrieval_<model>_<split> next to the model)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.examples < 0:
        raise UserError("--batch-size: expected 1 or more; --examples: expected 0 or more "
                        f"(received {args.batch_size}, {args.examples})")
    metrics = retrieve(args.model, args.data, args.k, args.metric, args.normalize, args.head, args.fit_split,
                       args.split, args.layer, args.batch_size, args.out, args.examples)
    print_retrieval(metrics, metrics["out"])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
