"""Split methods: fractions, disjointness, stratification, determinism, groups, official."""
import numpy as np
import pytest

from common.errors import UserError
from data_prep.options import parse_fractions
from data_prep.splits import SPLITTERS, assign_splits

LABELS = np.repeat(np.arange(20), np.linspace(20, 80, 20).astype(int))  # imbalanced, 20 classes


@pytest.mark.parametrize("fractions", ["67.5/22.5/10", "70/15/15"])
def test_stratified_split_fractions_and_per_class_proportions(fractions):
    val, test = parse_fractions(fractions)
    assignment = assign_splits("stratified", LABELS, [None] * len(LABELS), val, test, seed=0)
    assert set(assignment) == {"train", "val", "test"}
    for split, share in (("train", 1 - val - test), ("val", val), ("test", test)):
        assert abs(np.mean(assignment == split) - share) < 0.01
        for label in range(20):  # stratified: every class gets its share (± 2 images)
            members = LABELS == label
            assert abs(np.sum(assignment[members] == split) - share * members.sum()) <= 2


def test_splits_are_deterministic_per_seed():
    first = assign_splits("stratified", LABELS, [None] * len(LABELS), 0.15, 0.15, seed=3)
    again = assign_splits("stratified", LABELS, [None] * len(LABELS), 0.15, 0.15, seed=3)
    other = assign_splits("stratified", LABELS, [None] * len(LABELS), 0.15, 0.15, seed=4)
    assert (first == again).all() and not (first == other).all()


def test_rare_classes_do_not_break_stratification():
    labels = np.array([0] * 30 + [1] * 30 + [2, 3, 4])  # three singleton classes
    assignment = assign_splits("stratified", labels, [None] * len(labels), 0.2, 0.2, seed=0)
    assert set(assignment) == {"train", "val", "test"} and None not in set(assignment)


def test_grouped_split_never_straddles_groups():
    rng = np.random.default_rng(0)
    groups = np.arange(len(LABELS))
    for start in rng.choice(len(LABELS) - 5, size=60, replace=False):  # near-duplicate runs within a class
        if LABELS[start] == LABELS[start + 4]:
            groups[start:start + 5] = groups[start]
    assignment = assign_splits("grouped", LABELS, [None] * len(LABELS), 0.15, 0.15, seed=0, groups=groups)
    for group in np.unique(groups):
        assert len(set(assignment[groups == group])) == 1
    for split, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(np.mean(assignment == split) - share) < 0.03
    again = assign_splits("grouped", LABELS, [None] * len(LABELS), 0.15, 0.15, seed=0, groups=groups)
    assert (assignment == again).all()


def test_official_split_keeps_test_and_carves_validation_from_train():
    source = np.array(["train"] * 600 + ["test"] * 400, dtype=object)
    labels = np.tile(np.arange(10), 100)
    assignment = assign_splits("official", labels, source, 0.1, 0.0, seed=0)
    assert (assignment[600:] == "test").all()
    assert np.sum(assignment[:600] == "val") == 60 and np.sum(assignment[:600] == "train") == 540
    from_test = assign_splits("official", labels, source, 0.5, 0.0, seed=0, val_from="test")
    assert (from_test[:600] == "train").all()
    assert np.sum(from_test[600:] == "val") == 200 and np.sum(from_test[600:] == "test") == 200
    for label in range(10):  # stratified halves of the test set, as report 003 did
        members = labels[600:] == label
        assert abs(np.sum(from_test[600:][members] == "val") - 20) <= 1
    with pytest.raises(UserError, match="defines no train/test split"):
        assign_splits("official", labels, [None] * 1000, 0.1, 0.0, seed=0)


@pytest.mark.parametrize("text", ["70/15", "70/20/20", "a/b/c", "-10/60/50"])
def test_bad_fractions_are_clear_errors(text):
    with pytest.raises(UserError, match="--fractions"):
        parse_fractions(text)


def test_unknown_split_method():
    with pytest.raises(UserError, match="did you mean 'grouped'"):
        assign_splits("grouped_", LABELS, [None] * len(LABELS), 0.1, 0.1, seed=0)


@pytest.mark.parametrize("method", SPLITTERS.names())
def test_every_splitter_assigns_every_row_deterministically(method):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 300)
    source = np.where(rng.random(300) < 0.5, "train", "test")
    groups = np.arange(300) // 2  # pairs of near-duplicates
    first = assign_splits(method, labels, source, 0.15, 0.0 if method == "official" else 0.15, 7, groups)
    again = assign_splits(method, labels, source, 0.15, 0.0 if method == "official" else 0.15, 7, groups)
    assert list(first) == list(again) and set(first) == {"train", "val", "test"}
    pool = first[source == "train"] if SPLITTERS.get(method).official else first  # official: val comes from train
    assert 0.08 < np.mean(pool == "val") < 0.22
