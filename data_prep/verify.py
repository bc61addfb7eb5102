"""``python -m data_prep.verify OUT``: re-read every shard and check it against the manifest.

Checks per shard: present, size and sha256, record count; per record: parses with the schema,
the JPEG decodes to the stored height × width with 3 channels, labels in ``-1 … num_classes-1``,
box normalised and ordered, id unique across all splits; per split: example and class counts; the class
names against the hierarchy (a model filed under a make whose name it does not hold).
Exit status 0 only when everything agrees; every disagreement is printed.
"""
from __future__ import annotations

import collections
import sys
from typing import Dict, List, Optional, Sequence

from common import fs
from common.cli import command_parser, quiet_tensorflow, run_main
from data_prep import schema
from data_prep.manifest import hierarchy_problems, load_manifest
from data_prep.shards import file_digest

MAX_REPORTED = 20


def decoded_records(path: str, heads: Sequence[str]):
    """A dataset of parsed records plus the decoded image shape; records that fail are dropped."""
    import tensorflow as tf

    def decode(serialized):
        parsed = schema.parse_example(serialized, heads)
        image = tf.io.decode_jpeg(parsed[schema.IMAGE], channels=3)
        parsed.pop(schema.IMAGE)
        parsed["decoded_shape"] = tf.shape(image)[:2]
        return parsed

    return (tf.data.TFRecordDataset(path).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
            .ignore_errors(log_warning=False).prefetch(tf.data.AUTOTUNE))


def broken_records(path: str, heads: Sequence[str]) -> List[str]:
    """Slow path, only when a shard has records that fail: which ones, and why."""
    import tensorflow as tf

    problems = []
    for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
        try:
            parsed = schema.parse_example(serialized, heads)
            tf.io.decode_jpeg(parsed[schema.IMAGE], channels=3)
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
            problems.append(f"record {index}: {error.message.splitlines()[0][:160]}")
    return problems


def check_record(record: dict, heads: Dict[str, int]) -> List[str]:
    """Problems of one parsed record (labels, box, size)."""
    problems = []
    height, width = int(record[schema.HEIGHT]), int(record[schema.WIDTH])
    if tuple(int(v) for v in record["decoded_shape"]) != (height, width):
        problems.append(f"stored size {height}x{width} but the JPEG decodes to "
                        f"{int(record['decoded_shape'][0])}x{int(record['decoded_shape'][1])}")
    for head, num_classes in heads.items():
        label = int(record[schema.label_key(head)])
        if not -1 <= label < num_classes:
            problems.append(f"label/{head} = {label} outside -1..{num_classes - 1}")
    ymin, xmin, ymax, xmax = (float(v) for v in record[schema.BBOX])
    if not (0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1):
        problems.append(f"bbox {ymin:.3f},{xmin:.3f},{ymax:.3f},{xmax:.3f} not normalised and ordered")
    return problems


def verify_shard(folder: str, shard: dict, heads: Dict[str, int], seen_ids: set, counts):
    """Check one shard; update ``seen_ids`` and per-head ``counts``.

    Returns ``(shard problems, record problems)``.
    """
    path = fs.join(folder, shard["path"])
    if not fs.exists(path):
        return [f"{shard['path']}: missing"], []
    problems, record_problems = [], []
    sha256, size = file_digest(path)
    if size != shard["bytes"] or sha256 != shard["sha256"]:
        problems.append(f"{shard['path']}: checksum differs from the manifest (size {size} vs {shard['bytes']})")
    records = 0
    for record in decoded_records(path, list(heads)).as_numpy_iterator():
        records += 1
        image_id = record[schema.IMAGE_ID].decode("utf-8")
        if image_id in seen_ids:
            problems.append(f"{shard['path']}: image id {image_id!r} appears more than once")
        seen_ids.add(image_id)
        record_problems += [f"{shard['path']}: {image_id}: {text}" for text in check_record(record, heads)]
        for head in heads:
            counts[head][int(record[schema.label_key(head)])] += 1
    try:
        import tensorflow as tf

        total = sum(1 for _ in tf.data.TFRecordDataset(path))
    except Exception as error:  # a damaged file: TFRecord framing errors
        return problems + [f"{shard['path']}: cannot be read to the end ({type(error).__name__})"], record_problems
    if total != records:
        problems += [f"{shard['path']}: {text}" for text in broken_records(path, list(heads))]
    if total != shard["examples"]:
        problems.append(f"{shard['path']}: {total} records, the manifest says {shard['examples']}")
    return problems, record_problems


def verify_dataset(folder: str) -> List[str]:
    """Every disagreement between the shards in ``folder`` and its manifest (empty: all agree).

    Shard- and split-level problems come first, then problems of single records.
    """
    manifest = load_manifest(folder)
    heads = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
    problems, record_problems, seen_ids = hierarchy_problems(manifest), [], set()
    for split, entry in manifest["splits"].items():
        counts = {head: collections.Counter() for head in heads}
        for shard in entry["shards"]:
            shard_problems, bad_records = verify_shard(folder, shard, heads, seen_ids, counts)
            problems += shard_problems
            record_problems += bad_records
        examples = sum(counts[next(iter(heads))].values()) if heads else 0
        if examples != entry["examples"]:
            problems.append(f"split {split}: {examples} readable records, the manifest says {entry['examples']}")
        for head, expected in entry["class_counts"].items():
            found = [counts[head][index] for index in range(heads[head])]
            if len(expected["per_class"]) != heads[head]:
                problems.append(f"split {split}: {len(expected['per_class'])} class counts for {head!r}, "
                                f"but its vocabulary has {heads[head]} classes")
            elif found != expected["per_class"] or counts[head][-1] != expected["unknown"]:
                wrong = sum(a != b for a, b in zip(found, expected["per_class"]))
                problems.append(f"split {split}: class counts of {head!r} differ from the manifest "
                                f"({wrong} classes, unknown {counts[head][-1]} vs {expected['unknown']})")
    return problems + record_problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    parser = command_parser("python -m data_prep.verify", __doc__)
    parser.add_argument("out", help="folder written by python -m data_prep.build (with manifest.json)")
    args = parser.parse_args(argv)
    problems = verify_dataset(args.out)
    manifest = load_manifest(args.out)
    total = sum(entry["examples"] for entry in manifest["splits"].values())
    if problems:
        print(f"{len(problems)} problem(s) in {args.out}:")
        for problem in problems[:MAX_REPORTED]:
            print(f"  - {problem}")
        if len(problems) > MAX_REPORTED:
            print(f"  … and {len(problems) - MAX_REPORTED} more")
        return 1
    print(f"ok: {total} records in {sum(len(e['shards']) for e in manifest['splits'].values())} shards "
          f"agree with {fs.join(args.out, 'manifest.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
