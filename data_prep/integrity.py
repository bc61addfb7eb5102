"""Shards that are missing or damaged, named in one clear line with the fix.

Training and evaluation check that every shard the manifest lists is present before they start,
and turn a read error in the middle of an epoch (TensorFlow's ``DataLossError``: a record whose
checksum fails) into a message naming the damaged files, found by comparing each shard with the
sha256 recorded in ``manifest.json``.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, List

from common import fs
from common.errors import UserError
from data_prep.manifest import MANIFEST
from data_prep.shards import file_digest


def _shards(manifest: dict, splits: Iterable[str]) -> List[dict]:
    wanted = [split for split in dict.fromkeys(splits) if split in manifest["splits"]]
    return [shard for split in wanted for shard in manifest["splits"][split]["shards"]]


def _fix(folder: str) -> str:
    return (f"run python -m data_prep.verify {folder} for details, then rebuild the shards (the same "
            "python -m data_prep.build command with --overwrite)")


def missing_shards(folder: str, manifest: dict, splits: Iterable[str]) -> List[str]:
    return [shard["path"] for shard in _shards(manifest, splits) if not fs.exists(fs.join(folder, shard["path"]))]


def require_shards(folder: str, manifest: dict, splits: Iterable[str]) -> None:
    """Every shard of ``splits`` that the manifest lists must exist (checked before any work)."""
    missing = missing_shards(folder, manifest, splits)
    if missing:
        raise UserError(f"{len(missing)} shard(s) listed in {fs.join(folder, MANIFEST)} are missing: "
                        f"{', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}; {_fix(folder)}")


def damaged_shards(folder: str, manifest: dict, splits: Iterable[str]) -> List[str]:
    """Shards whose size or sha256 differs from the manifest (reads every shard of ``splits``)."""
    damaged = []
    for shard in _shards(manifest, splits):
        path = fs.join(folder, shard["path"])
        if not fs.exists(path) or fs.size(path) != shard["bytes"] or file_digest(path)[0] != shard["sha256"]:
            damaged.append(shard["path"])
    return damaged


@contextlib.contextmanager
def reading_shards(folder: str, manifest: dict, splits: Iterable[str]):
    """Turn a read error from damaged shards of ``splits`` into one :class:`UserError` naming them."""
    import tensorflow as tf

    splits = list(splits)
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        damaged = damaged_shards(folder, manifest, splits)
        if not damaged and not isinstance(error, tf.errors.DataLossError):
            raise  # not the data: a genuine bug keeps its traceback
        what = (f"{', '.join(damaged)} (their contents differ from the checksums in {MANIFEST})" if damaged else
                f"a shard ({(error.message or str(error)).splitlines()[0][:160]})")
        raise UserError(f"damaged shard(s) in {folder}: {what}; {_fix(folder)}") from None
