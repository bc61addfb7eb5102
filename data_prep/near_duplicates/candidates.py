"""Near-duplicate detection with 64-bit perceptual hashes (``imagehash.phash``).

Web-scraped car datasets contain the same photo several times (re-encoded, resized, watermarked);
when copies land in both train and test, accuracy is inflated (published CompCars accuracies fall
from about 90% to about 61% once near-duplicates are kept apart). Pairs within a Hamming distance
are found by a chunked all-pairs comparison in NumPy, groups by union-find.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, Sequence

import numpy as np

HASH_NAME = "phash-64"
SPLIT_ORDER = ("train", "val", "test")


def hashes_to_array(hex_hashes: Sequence[str]) -> np.ndarray:
    """Hex strings (16 characters each) → ``uint64`` array."""
    return np.array([int(value, 16) for value in hex_hashes], dtype=np.uint64)


def near_duplicate_pairs(hashes: np.ndarray, threshold: int, chunk: int = 64) -> np.ndarray:
    """All index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``threshold`` bits.

    Memory stays at ``chunk × n`` 64-bit words; time is ``n² / 2`` XOR-and-popcounts (about
    half a minute for CompCars' 136k images on one core).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), chunk):
        block = hashes[start:start + chunk, None]
        distances = np.bitwise_count(block ^ hashes[None, start:])
        rows, cols = np.nonzero(distances <= threshold)
        keep = cols > rows  # columns are offset by ``start``: col > row means j > i
        found.append(np.stack([rows[keep] + start, cols[keep] + start], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)


def group_ids(count: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the near-duplicate graph; a group's id is its smallest member."""
    parent = np.arange(count)

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for first, second in pairs:
        root_a, root_b = find(int(first)), find(int(second))
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find(node) for node in range(count)])


def cross_split_pairs(pairs: np.ndarray, splits: Sequence[str]) -> Dict[str, int]:
    """Count near-duplicate pairs per split combination (``train/test`` …) and in total."""
    splits = np.asarray(splits, dtype=object)
    counts = {f"{a}/{b}": 0 for a, b in itertools.combinations(SPLIT_ORDER, 2)}
    for first, second in pairs:
        a, b = splits[first], splits[second]
        if a != b and a is not None and b is not None:
            key = "/".join(sorted((a, b), key=_split_rank))
            counts[key] = counts.get(key, 0) + 1
    counts["total"] = sum(counts.values())
    return counts


def _split_rank(name: str) -> int:
    return SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER)


def describe(pairs: np.ndarray, splits: Iterable, threshold: int) -> dict:
    """The manifest's ``near_duplicates`` entry."""
    splits = list(splits)
    groups = group_ids(len(splits), pairs) if len(splits) else np.zeros(0, dtype=int)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=int)
    return {
        "hash": HASH_NAME,
        "threshold": int(threshold),
        "pairs": int(len(pairs)),
        "images_in_groups": int(sizes[sizes > 1].sum()) if len(sizes) else 0,
        "cross_split_pairs": cross_split_pairs(pairs, splits),
    }
