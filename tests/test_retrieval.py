"""eval.retrieval end to end on the tiny trained model, and its bad inputs."""
import csv
import json

import numpy as np
import pytest

import keras

from common.cli import run_main
from tests.helpers import manifest_of, embeddings, read_records






def test_vote_breaks_ties_like_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    from eval.retrieval import neighbours, vote

    rng = np.random.default_rng(0)
    gallery, labels = rng.normal(size=(60, 5)), rng.integers(0, 4, 60)
    queries = rng.normal(size=(40, 5))
    for k in (1, 2, 4, 13):  # even k: ties happen
        ours = vote(labels[neighbours(gallery, queries, k, "manhattan")], 4)
        reference = KNeighborsClassifier(n_neighbors=k, metric="manhattan", algorithm="brute").fit(gallery, labels)
        np.testing.assert_array_equal(ours, reference.predict(queries))


def test_retrieval_matches_scikit_learn_on_the_same_embeddings(trained, tiny_shards, tmp_path):
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.neighbors import KNeighborsClassifier

    from eval.retrieval import retrieve

    metrics = retrieve(str(trained / "model.keras"), ks=(3, 1), out=str(tmp_path / "r"), examples=2)
    manifest = manifest_of(tiny_shards)
    model = keras.models.load_model(trained / "model.keras", compile=False)
    train, test = read_records(tiny_shards, manifest, "train"), read_records(tiny_shards, manifest, "test")
    normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    gallery, queries = normalise(embeddings(model, train)), normalise(embeddings(model, test))
    y_train = np.array([r["label/model"] for r in train])
    y_test = np.array([r["label/model"] for r in test])
    for row in metrics["by_k"]:
        knn = KNeighborsClassifier(n_neighbors=row["k"], metric="manhattan", algorithm="brute").fit(gallery, y_train)
        predicted = knn.predict(queries)
        assert row["accuracy"] == pytest.approx(np.mean(predicted == y_test), abs=1e-9)
        p, r, f, _ = precision_recall_fscore_support(y_test, predicted, average="weighted", labels=range(8),
                                                     zero_division=0)
        weighted = row["weighted"]
        assert (weighted["precision"], weighted["recall"], weighted["f1"]) == pytest.approx((p, r, f))
    assert metrics["retrieval"]["gallery_size"] == len(train) and metrics["retrieval"]["dimensions"] == 512
    out = tmp_path / "r"
    written = json.loads((out / "metrics.json").read_text())
    assert written["heads"]["model"]["accuracy"] == metrics["by_k"][0]["accuracy"]
    rows = list(csv.DictReader(open(out / "neighbours.csv")))
    assert len(rows) == len(test) and all(len(row["neighbours"].split()) == 3 for row in rows)
    assert (out / "figures" / "neighbours.png").stat().st_size > 5000 and "| k |" in (out / "report.md").read_text()


def test_retrieval_refuses_exports_unknown_layers_and_bad_options(trained, tmp_path, capsys):
    from eval import retrieval
    from eval.export import export

    export(str(trained / "model.keras"), "tflite", str(tmp_path / "m.tflite"), check=False)
    model = str(trained / "model.keras")
    cases = [(["--model", str(tmp_path / "m.tflite")], "needs the .keras or .h5"),
             (["--model", model, "--layer", "nope"], "no layer 'nope'"),
             (["--model", model, "--k", "0"], "--k"),
             (["--model", model, "--head", "colour"], "no head 'colour'")]
    for argv, expected in cases:
        assert run_main(retrieval.main, argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)




def test_retrieval_within_one_split_leaves_each_query_out_of_its_neighbours(trained, tiny_shards, tmp_path, capsys):
    """--split train --fit-split train found each query itself at distance 0: accuracy 1.0, silently."""
    from sklearn.neighbors import NearestNeighbors

    from eval.retrieval import retrieve

    metrics = retrieve(str(trained / "model.keras"), ks=(1, 3), split="train", fit_split="train",
                       out=str(tmp_path / "r"), examples=0)
    assert "each query's own image is left out of its neighbours" in capsys.readouterr().out
    records = read_records(tiny_shards, manifest_of(tiny_shards), "train")
    model = keras.models.load_model(trained / "model.keras", compile=False)
    vectors = embeddings(model, records)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([r["label/model"] for r in records])
    found = NearestNeighbors(n_neighbors=2, metric="manhattan", algorithm="brute").fit(vectors).kneighbors(
        vectors, return_distance=False)
    nearest_other = np.array([row[1] if row[0] == i else row[0] for i, row in enumerate(found)])
    assert metrics["by_k"][0]["accuracy"] == pytest.approx(np.mean(labels[nearest_other] == labels))
    assert metrics["retrieval"]["leave_one_out"] and "own image left out" in (tmp_path / "r" / "report.md").read_text()
    for row in csv.DictReader(open(tmp_path / "r" / "neighbours.csv")):
        assert row["id"] not in row["neighbours"].split()
