"""Near-duplicate pairs (against brute force), groups and cross-split counts."""
import numpy as np

from data_prep.near_duplicates.candidates import cross_split_pairs, describe, group_ids, near_duplicate_pairs


def test_pairs_match_brute_force_with_planted_duplicates():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2 ** 63, size=300, dtype=np.int64).astype(np.uint64)
    for source, target, flips in ((3, 150, 2), (10, 299, 4), (42, 43, 5), (7, 8, 0)):
        value = int(hashes[source])
        for bit in rng.choice(64, size=flips, replace=False):
            value ^= 1 << int(bit)
        hashes[target] = np.uint64(value)
    pairs = near_duplicate_pairs(hashes, threshold=4, chunk=17)
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    expected = {(i, j) for i, j in zip(*np.nonzero(distances <= 4)) if i < j}
    assert {tuple(pair) for pair in pairs.tolist()} == expected
    assert {(3, 150), (10, 299), (7, 8)} <= expected and (42, 43) not in expected


def test_groups_are_transitive_and_named_by_smallest_member():
    groups = group_ids(6, np.array([[4, 5], [1, 4], [2, 3]]))
    assert groups.tolist() == [0, 1, 2, 2, 1, 1]


def test_cross_split_pairs_and_description():
    pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    splits = ["train", "train", "test", "val", "val"]
    assert cross_split_pairs(pairs, splits) == {"train/val": 0, "train/test": 1, "val/test": 1, "total": 2}
    report = describe(pairs, splits, threshold=6)
    assert report["pairs"] == 4 and report["images_in_groups"] == 5 and report["threshold"] == 6
