"""Vocabularies, integer labels, rare-class dropping and class counts."""
from data_prep.labels import class_counts, drop_rare_classes, encode_labels, make_vocabularies, sort_names
from data_prep.table import DatasetTable, make_rejects, make_table


def dataset(rows, viewpoint_codes=None):
    return DatasetTable("x", "y", "/", make_table(rows), make_rejects(), ("make", "model"),
                        {"viewpoint_codes": viewpoint_codes or {}})


ROWS = [
    {"image_id": "a", "make": "smart", "model": "smart fortwo", "year": "2012", "viewpoint": 1},
    {"image_id": "b", "make": "Audi", "model": "Audi A4", "year": None, "viewpoint": -1},
    {"image_id": "c", "make": "BMW", "model": "BMW X5", "year": "2009", "viewpoint": 3},
    {"image_id": "d", "make": "Audi", "model": "Audi A4", "year": "2012", "viewpoint": 3},
]


def test_vocabularies_are_sorted_case_insensitively_and_stable():
    data = dataset(ROWS, {"1": "front", "3": "side"})
    vocab = make_vocabularies(data, ["make", "year", "viewpoint"])
    assert vocab == {"make": ["Audi", "BMW", "smart"], "year": ["2009", "2012"], "viewpoint": ["front", "side"]}
    assert make_vocabularies(dataset(list(reversed(ROWS)), {"1": "front", "3": "side"}),
                             ["make", "year", "viewpoint"]) == vocab
    assert sort_names(["b", "B", "a"]) == ["a", "B", "b"]


def test_unknown_values_encode_as_minus_one():
    data = dataset(ROWS, {"1": "front", "3": "side"})
    vocab = make_vocabularies(data, ["make", "year", "viewpoint"])
    labels = encode_labels(data, vocab)
    assert labels["make"].tolist() == [2, 0, 1, 0]
    assert labels["year"].tolist() == [1, -1, 0, 1]
    assert labels["viewpoint"].tolist() == [0, -1, 1, 1]
    counts = class_counts(labels, vocab)
    assert counts["year"] == {"per_class": [1, 2], "unknown": 1}
    assert counts["make"] == {"per_class": [2, 1, 1], "unknown": 0}


def test_rare_model_classes_are_dropped_and_reported():
    data = dataset(ROWS)
    reduced, dropped = drop_rare_classes(data, min_images=2)
    assert dropped == {"BMW X5": 1, "smart fortwo": 1}
    assert reduced.table["model"].tolist() == ["Audi A4", "Audi A4"]
    assert drop_rare_classes(data, min_images=1) == (data, {})


def test_hierarchy_keeps_only_functional_mappings():
    import pandas as pd

    from data_prep.labels import hierarchy

    labels = pd.DataFrame({"model": [0, 0, 1, 1, 2, 2], "make": [1, 1, 0, 0, 1, 1], "year": [0, 1, 2, 2, 0, 0],
                           "type": [-1, 2, 3, 3, -1, -1]})
    assert hierarchy(labels) == {"make": [1, 0, 1], "type": [2, 3, -1]}  # year varies within model 0
