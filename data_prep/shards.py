"""Shard planning and writing, resumable after an interruption.

A split's rows (already shuffled with the seed) are cut into shards of about ``--shard-mb``
megabytes (estimated from a fixed sample of processed images) or into ``--num-shards`` pieces.
Workers process images in parallel; the parent serializes and writes records in order. Each shard
is written under a temporary name and renamed when complete; then a small "part" file recording
what went into it (counts, checksum, rejections, hashes) is written atomically. A re-run skips
shards whose part file exists and redoes the rest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from common import fs
from common.errors import UserError
from common.progress import bar
from data_prep import schema
from data_prep.images import ImageOptions, ImageTask, Processed, Rejected, hash_batch, process, process_batch
from data_prep.parallel import bind, ordered_map, worker_pool

ESTIMATE_SAMPLE = 32
DEFAULT_BYTES_PER_IMAGE = 100_000


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """Rows (positions in the prepared table) that go into one shard file."""

    split: str
    index: int
    count: int
    rows: tuple

    @property
    def name(self) -> str:
        return schema.shard_name(self.split, self.index, self.count)


@dataclasses.dataclass
class ShardInputs:
    """Everything the writer needs per row position: the image task, its id, labels and viewpoint."""

    tasks: Sequence[ImageTask]
    image_ids: Sequence[str]
    labels: Dict[str, np.ndarray]
    viewpoints: Sequence[int]


def estimate_bytes_per_image(tasks: Sequence[ImageTask], options: ImageOptions) -> float:
    """Mean output size over a fixed sample (deterministic, so a re-run plans the same shards)."""
    step = max(1, len(tasks) // ESTIMATE_SAMPLE)
    sizes = [len(result.encoded) for result in
             (process(dataclasses.replace(task, want_hash=False), options) for task in tasks[::step][:ESTIMATE_SAMPLE])
             if isinstance(result, Processed)]
    return float(np.mean(sizes)) if sizes else float(DEFAULT_BYTES_PER_IMAGE)


def plan_split(split: str, positions: Sequence[int], num_shards: int) -> List[ShardPlan]:
    """Cut a split's (shuffled) row positions into ``num_shards`` contiguous, near-equal shards."""
    num_shards = max(1, min(num_shards, len(positions)))
    pieces = np.array_split(np.asarray(positions, dtype=np.int64), num_shards)
    return [ShardPlan(split, index, num_shards, tuple(int(p) for p in piece))
            for index, piece in enumerate(pieces)]


def part_path(out: str, plan: ShardPlan) -> str:
    return fs.join(out, ".build", "parts", plan.name + ".json")


def completed_parts(out: str, plans: Sequence[ShardPlan]) -> Dict[str, dict]:
    """Parts of shards finished by an earlier run (shard renamed into place, part file written)."""
    done = {}
    for plan in plans:
        path = part_path(out, plan)
        if fs.exists(path) and fs.exists(fs.join(out, plan.name)):
            done[plan.name] = json.loads(fs.read_text(path))
    return done


def file_digest(path: str) -> tuple:
    """``(sha256 hex, size in bytes)`` of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with fs.open_file(path, "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            if not block:
                return digest.hexdigest(), size
            digest.update(block)
            size += len(block)


def write_shard(out: str, plan: ShardPlan, results: Iterator, inputs: ShardInputs, progress) -> dict:
    """Write one shard from the next ``len(plan.rows)`` results; return its part record."""
    import tensorflow as tf

    final = fs.join(out, plan.name)
    temporary = fs.temporary_name(final)
    written, rejected, hashes, converted = [], [], {}, {}
    with tf.io.TFRecordWriter(temporary) as writer:
        for position in plan.rows:
            result, image_id = next(results), inputs.image_ids[position]
            progress.update(1)
            if isinstance(result, Rejected):
                rejected.append([image_id, result.reason])
                continue
            labels = {head: int(values[position]) for head, values in inputs.labels.items()}
            writer.write(schema.serialize_example(result.encoded, result.height, result.width, image_id,
                                                  labels, result.bbox, inputs.viewpoints[position]))
            written.append(image_id)
            if result.phash is not None:
                hashes[image_id] = result.phash
            for reason in (result.converted.split(", ") if result.converted else ()):
                converted[reason] = converted.get(reason, 0) + 1
    sha256, size = file_digest(temporary)
    fs.rename(temporary, final)
    part = {"name": plan.name, "split": plan.split, "examples": len(written), "bytes": size,
            "sha256": sha256, "written": written, "rejected": rejected, "hashes": hashes,
            "converted": converted}
    fs.write_text_atomic(part_path(out, plan), json.dumps(part))
    return part


def write_shards(out: str, plans: Sequence[ShardPlan], inputs: ShardInputs, options: ImageOptions,
                 workers: int, show_progress: bool = True) -> Dict[str, dict]:
    """Write every shard not finished yet; return ``{shard name: part}`` for all shards."""
    import tensorflow  # heavy: data_prep imports it only to write (imported before the progress bar starts)

    fs.makedirs(fs.join(out, ".build", "parts"))
    fs.remove_temporaries(out)
    parts = completed_parts(out, plans)
    todo = [plan for plan in plans if plan.name not in parts]
    total = sum(len(plan.rows) for plan in plans)
    remaining = sum(len(plan.rows) for plan in todo)
    tasks = (inputs.tasks[position] for plan in todo for position in plan.rows)
    try:
        with worker_pool(workers) as pool, bar(total=total, initial=total - remaining, unit="img",
                                              desc="writing shards", disable=not show_progress) as progress:
            results = ordered_map(pool, bind(process_batch, options), tasks, batch_size=8,
                                  window=max(4, 4 * workers))
            for plan in todo:
                parts[plan.name] = write_shard(out, plan, results, inputs, progress)
    except BrokenProcessPool:
        raise UserError(f"a worker process died (killed for lack of memory?). The {len(parts)} complete shards "
                        "are kept: re-run the same command to continue, with fewer --workers if memory is "
                        "short") from None
    except (OSError, tensorflow.errors.OpError) as error:
        raise UserError(f"writing to {out} failed ({type(error).__name__}: {error}). The {len(parts)} complete "
                        "shards are kept: fix the cause (space, permissions) and re-run the same command") from None
    return parts


def hash_images(tasks: Sequence[ImageTask], workers: int, show_progress: bool = True) -> List:
    """Perceptual hashes (or rejections) of all images, in order — the grouped split's pre-pass."""
    with worker_pool(workers) as pool:
        results = ordered_map(pool, hash_batch, tasks, batch_size=16, window=max(4, 4 * workers))
        return list(bar(results, total=len(tasks), unit="img", desc="hashing", disable=not show_progress))


def shard_count_for_split(examples: int, bytes_per_image: float, shard_mb: float,
                          num_shards: Optional[int]) -> int:
    """Shards for one split: ``--num-shards`` when given, else sized by ``--shard-mb``."""
    wanted = num_shards or round(examples * bytes_per_image / (shard_mb * 1e6))
    return max(1, min(int(wanted), examples))

