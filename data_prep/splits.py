"""Train / validation / test assignment: ``official``, ``stratified`` and ``grouped``.

* ``official`` – the dataset's own train/test; validation is a stratified cut of train;
* ``stratified`` – random, stratified on the model label (scikit-learn ``train_test_split``);
* ``grouped`` – like stratified, but near-duplicate groups are never split across two splits.

All are deterministic for a given seed. Classes too small to stratify are pooled (scikit-learn
needs two members per class) rather than failing the whole build.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from common.errors import UserError
from common.registry import Registry

LOG = logging.getLogger(__name__)
TRAIN, VAL, TEST = "train", "val", "test"


@dataclasses.dataclass(frozen=True)
class Splitter:
    """A split method: ``assign(labels, source_splits, val_fraction, test_fraction, seed, groups,
    val_from)`` → train/val/test per row; whether it keeps the dataset's own train/test (rows outside
    it are left out, and there is no test fraction to choose); whether it needs near-duplicate groups;
    its default validation and test fractions."""

    assign: Callable
    official: bool = False
    grouped: bool = False
    default_val: float = 0.15
    default_test: Optional[float] = 0.15


SPLITTERS: Registry[Splitter] = Registry("split", where="--split")


def splitter(name: str, **properties):
    """Register the decorated assignment function as the split method ``name``."""
    def register(assign: Callable) -> Callable:
        SPLITTERS.register(name)(Splitter(assign, **properties))
        return assign

    return register


def stratify_labels(labels: np.ndarray) -> Optional[np.ndarray]:
    """Labels usable as ``stratify=``: classes with one member are pooled together.

    Returns ``None`` when nothing can be stratified (fewer than two members everywhere).
    """
    labels = np.asarray(labels).copy()
    values, counts = np.unique(labels, return_counts=True)
    rare = np.isin(labels, values[counts < 2])
    if rare.any():
        labels[rare] = -2  # pooled pseudo-class
        if rare.sum() < 2:
            common = values[counts >= 2]
            if not len(common):
                return None
            labels[rare] = common[np.argmax(counts[counts >= 2])]
    return labels


def cut(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, cut-off part of size ``fraction``), stratified when possible."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0 or len(indices) == 0:
        return indices, indices[:0]
    if round(fraction * len(indices)) < 1:
        return indices, indices[:0]
    stratify = stratify_labels(labels[indices])
    try:
        return tuple(train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify))
    except ValueError as error:  # e.g. fewer test slots than classes: fall back to a random cut
        LOG.warning("cannot stratify a %.1f%% cut of %d images (%s); cutting at random",
                    100 * fraction, len(indices), error)
        return tuple(train_test_split(indices, test_size=fraction, random_state=seed))


def three_way(indices: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float,
              seed: int) -> np.ndarray:
    """Assign ``indices`` to train/val/test with the given fractions (stratified on ``labels``)."""
    assignment = np.empty(len(labels), dtype=object)
    rest, holdout = cut(indices, labels, val_fraction + test_fraction, seed)
    share = test_fraction / (val_fraction + test_fraction) if holdout.size else 0.0
    val, test = cut(holdout, labels, share, seed + 1)
    assignment[rest], assignment[val], assignment[test] = TRAIN, VAL, TEST
    return assignment


@splitter("official", official=True, default_val=0.1, default_test=None)
def official_split(labels, source_splits, val_fraction, test_fraction, seed, groups=None, val_from=TRAIN):
    """Dataset's train/test; validation carved (stratified) from train, or from test as report 003
    did (half of Stanford's test set). Rows without a source split get ``None``."""
    source = np.asarray(source_splits, dtype=object)
    if not any(value in (TRAIN, TEST) for value in source):
        raise UserError("--split official: this dataset/layout defines no train/test split; "
                        "use --split stratified or --split grouped")
    labels = np.asarray(labels)
    assignment = np.full(len(labels), None, dtype=object)
    assignment[source == TRAIN], assignment[source == TEST] = TRAIN, TEST
    rest, val = cut(np.flatnonzero(source == val_from), labels, val_fraction, seed)
    assignment[val] = VAL
    return assignment


@splitter("stratified")
def stratified_split(labels, source_splits, val_fraction, test_fraction, seed, groups=None, val_from=TRAIN):
    """Random split stratified on ``labels`` with scikit-learn (the reports' 67.5/22.5/10, 70/15/15)."""
    labels = np.asarray(labels)
    return three_way(np.arange(len(labels)), labels, val_fraction, test_fraction, seed)


@splitter("grouped", grouped=True)
def grouped_split(labels, source_splits, val_fraction, test_fraction, seed, groups=None, val_from=TRAIN):
    """Stratified split of whole near-duplicate groups: a group never straddles two splits.

    Each group takes its most frequent label; per label, groups (largest first, ties in random
    order) go to the split furthest below its target share.
    """
    if groups is None:
        raise ValueError("grouped split needs group ids")
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    targets = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    members = members_by_key(groups)
    group_label = np.array([labels[m[0]] if len(m) == 1 else most_frequent(labels[m]) for m in members])
    assignment = np.empty(len(labels), dtype=object)
    for chosen in members_by_key(group_label):
        order = sorted(rng.permutation(chosen), key=lambda g: -len(members[g]))
        filled, total = np.zeros(3), sum(len(members[g]) for g in chosen)
        for g in order:
            deficit = np.where(targets > 0, targets * total - filled, -np.inf)
            slot = int(np.argmax(deficit))
            filled[slot] += len(members[g])
            assignment[members[g]] = (TRAIN, VAL, TEST)[slot]
    return assignment


def members_by_key(keys: np.ndarray) -> list:
    """Row indices grouped by equal key, groups in key order (one sort, not one scan per key)."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    _, starts = np.unique(keys[order], return_index=True)
    return np.split(order, starts[1:])


def most_frequent(values: np.ndarray):
    """The most frequent value (smallest on ties)."""
    unique, counts = np.unique(values, return_counts=True)
    return unique[np.argmax(counts)]


def assign_splits(method: str, labels: Sequence[int], source_splits: Sequence, val_fraction: float,
                  test_fraction: float, seed: int, groups=None, val_from: str = TRAIN) -> np.ndarray:
    """Assign every row to ``train``/``val``/``test`` (or ``None``: not part of the split).

    Every splitter takes the same arguments (``val_from`` matters to ``official`` only)."""
    return SPLITTERS.get(method).assign(labels, source_splits, val_fraction, test_fraction, seed, groups=groups,
                                        val_from=val_from)
