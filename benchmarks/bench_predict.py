"""Benchmark of ``eval.predict``: single-image latency and batch throughput, Keras vs exported TFLite.

Not a test: prints a table (and writes ``results.json``). For each backbone a model with random
weights (``weights: none``; speed does not depend on the values) is built for the heads of a small
synthetic dataset, saved as ``.keras`` next to the dataset's manifest and exported to TFLite (float
and dynamic-range quantised). Every measurement goes through ``eval.predict``'s own path — read the
JPEG file, decode (DCT-scaled), predict, top-k and implied make — on 800×600 synthetic photos:

* latency: one photo per call, median and 95th percentile over ``--repeats`` calls (warm-up excluded);
* throughput: all photos in batches of ``--batch`` (photos of one size are predicted together).

Usage: ``python -m benchmarks.bench_predict [--backbones custom_cnn:64,mobilenet_v2:224,efficientnet_b0:224]
[--work bench_out/predict]``
"""
from __future__ import annotations

import os
import shutil
import statistics
import time

from benchmarks import results
from benchmarks.bench_build import machine
from common.cli import command_parser, quiet_tensorflow
from data_prep.manifest import load_manifest
from data_prep.prepare import ensure_shards
from eval.export import export
from eval.predict import Recogniser, predict_files
from models.build import build_model
from training.config import ModelConfig
from training.run import save_model_atomic


def prepare(work: str):
    """A synthetic dataset (for the manifest and the photos) built once."""
    raw = os.path.join(work, "raw")
    shards = ensure_shards(os.path.join(work, "shards"), raw, variant="devkit", makes=6, models_per_make=4,
                           images_per_model=3, bad_files=False, size=(800, 600))
    photos = sorted(os.path.join(folder, name) for folder, _, names in os.walk(raw) for name in names
                    if name.endswith(".jpg"))
    return shards, photos


def build(shards: str, backbone: str, size: int) -> str:
    """``<shards>/<backbone>_<size>/model.keras`` (with the manifest copied beside it)."""
    folder = os.path.join(shards, f"{backbone}_{size}")
    path = os.path.join(folder, "model.keras")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        manifest = load_manifest(shards)
        heads = {head: entry["num_classes"] for head, entry in manifest["heads"].items()}
        model = build_model(ModelConfig(backbone=backbone, weights="none", head="linear"), heads, size)
        save_model_atomic(model, path)
        shutil.copy(os.path.join(shards, "manifest.json"), folder)
    return path


def measure(model_path: str, photos, repeats: int, batch: int, threads: int) -> dict:
    recogniser = Recogniser(model_path, threads=threads)
    for path in photos[:3]:  # warm-up: tracing, allocation
        predict_files(recogniser, [path], 3)
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        predict_files(recogniser, [photos[index % len(photos)]], 3)
        times.append(time.perf_counter() - start)
    predict_files(recogniser, photos[:batch], 3, batch)
    start = time.perf_counter()
    rows, problems = predict_files(recogniser, photos, 3, batch)
    elapsed = time.perf_counter() - start
    assert not problems and len(rows) == len(photos)
    times.sort()
    return {"median_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
            "throughput": len(photos) / elapsed}


def main() -> None:
    quiet_tensorflow()
    parser = command_parser("python -m benchmarks.bench_predict", __doc__)
    parser.add_argument("--backbones", default="custom_cnn:64,mobilenet_v2:224,efficientnet_b0:224",
                        help="comma-separated backbone:image_size")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work", default="bench_out/predict")
    args = parser.parse_args()
    shards, photos = prepare(args.work)
    print(f"{len(photos)} photos of 800×600; {args.repeats} single-photo calls; batches of {args.batch}; "
          f"{args.threads} threads\n")
    print(f"{'model':<22}{'format':<18}{'median ms':>10}{'p95 ms':>9}{'photos/s':>10}{'speed-up':>10}")
    rows = []
    for item in args.backbones.split(","):
        backbone, size = item.split(":")
        keras_path = build(shards, backbone, int(size))
        folder = os.path.dirname(keras_path)
        variants = [("keras", keras_path)]
        for quantize in (False, True):
            target = os.path.join(folder, f"model{'_quantized' if quantize else ''}.tflite")
            if not os.path.exists(target):
                export(keras_path, "tflite", target, quantize=quantize, check=False)
            variants.append(("tflite" + (" (quantized)" if quantize else ""), target))
        reference = None
        for name, path in variants:
            row = {"model": f"{backbone} {size}px", "format": name, **measure(path, photos, args.repeats, args.batch,
                                                                              args.threads)}
            reference = reference or row["median_ms"]
            row["speedup"] = reference / row["median_ms"]
            rows.append(row)
            print(f"{row['model']:<22}{name:<18}{row['median_ms']:>10.2f}{row['p95_ms']:>9.2f}"
                  f"{row['throughput']:>10.1f}{row['speedup']:>9.2f}×")
    results.save("bench_predict", {"photos": len(photos), "repeats": args.repeats, "batch": args.batch,
                                   "threads": args.threads, "rows": rows}, machine())


if __name__ == "__main__":
    main()
