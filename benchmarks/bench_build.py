"""Benchmark of ``data_prep.build`` on synthetic full-size (800×600) JPEGs. Not a test: prints tables.

Measures, in one run:

* the ceiling: decode + resize (LANCZOS, as the build) + JPEG encode of the same images on all cores
  in a plain process pool, no TFRecord writing; and the build's own per-image work
  (``data_prep.images.process``: also verification and the perceptual hash) the same way;
* build throughput with 1 worker and with all workers (``build_dataset`` in this process, so the
  one-off Python/TensorFlow start-up is not counted), as a fraction of the ceiling;
* bytes per image with and without ``--max-side``;
* peak memory (sum of the proportional set sizes of the build process and its workers, sampled every 20 ms)
  building 1,000 and 5,000 images as a separate ``python -m data_prep.build`` process.

With ``--real`` the same on the real Stanford Cars photos (:mod:`benchmarks.realphotos`: 825 photos,
repeated as mirrored and rotated re-encodes to the sizes asked for).

Usage: ``python -m benchmarks.bench_build [--images 5000] [--small 1000] [--max-side 512] [--work DIR] [--real]``
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

from PIL import Image
from PIL import __version__ as pil

from benchmarks import realphotos, results
from common.cli import command_parser, quiet_tensorflow
from data_prep.near_duplicates import pairs
from data_prep.build import build_dataset
from data_prep.datasets import read_dataset
from data_prep.images import ImageOptions, ImageTask, process
from data_prep.options import BuildOptions
from data_prep.synthetic import generate

MEBI = 1024 * 1024
VERIFYING = []  # seconds spent in the near-duplicate verification, one entry per call
LAST_BUILD: dict = {}  # the last timed build's seconds, verification seconds, candidates and pairs


def _timed(function):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            VERIFYING.append(time.perf_counter() - start)
    return timed


pairs.verify = _timed(pairs.verify)  # find_pairs looks it up at call time


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = int(open("/proc/meminfo").readline().split()[1]) / 1024 / 1024
    except OSError:
        memory = 0
    quiet_tensorflow()  # heavy, and without its start-up banners: only here (spawned image workers import
    import tensorflow as tf  # this module again: TensorFlow at its top would load in every one of them)

    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, Pillow {pil}")


def make_dataset(root: str, images: int) -> int:
    """Synthetic Stanford Cars (devkit layout) with about ``images`` 800×600 pictures, no bad files."""
    if os.path.exists(os.path.join(root, "SYNTHETIC.json")):
        return json.load(open(os.path.join(root, "SYNTHETIC.json")))["images"]
    classes = 50
    per_class = max(1, round(images / classes / 1.05))
    return generate("stanford_cars", root, "devkit", makes=10, models_per_make=5, images_per_model=per_class,
                    seed=0, bad_files=False, size=(800, 600))["images"]


def naive_pil(path: str, max_side: int) -> int:
    image = Image.open(path).convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return len(buffer.getvalue())


def same_work(path: str, max_side: int) -> int:
    return len(process(ImageTask(path, None), ImageOptions(max_side=max_side)).encoded)


def ceiling(paths, function, max_side: int, workers: int) -> float:
    """Images per second of ``function`` over ``paths`` on ``workers`` processes (warm pool)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(function, paths[:workers * 4], [max_side] * workers * 4))  # start and warm the workers
        start = time.perf_counter()
        list(pool.map(function, paths, [max_side] * len(paths), chunksize=16))
        return len(paths) / (time.perf_counter() - start)


def timed_build(root: str, out: str, workers: int, max_side) -> tuple:
    """``(images/s, bytes per image, examples)`` of one build; prints how much of it the
    near-duplicate verification took."""
    shutil.rmtree(out, ignore_errors=True)
    VERIFYING.clear()
    start = time.perf_counter()
    manifest = build_dataset(BuildOptions(dataset="stanford_cars", root=root, out=out, workers=workers,
                                          max_side=max_side, progress=False, split="stratified"))
    seconds = time.perf_counter() - start
    examples = sum(entry["examples"] for entry in manifest["splits"].values())
    size = sum(shard["bytes"] for entry in manifest["splits"].values() for shard in entry["shards"])
    near = manifest["near_duplicates"]
    print(f"  build, {workers} worker(s), max side {max_side}: {seconds:.1f} s, of which near-duplicate verification "
          f"{sum(VERIFYING):.1f} s ({near['candidates']} pHash candidates, {near['pairs']} same-photo pairs)",
          flush=True)
    LAST_BUILD.update({"seconds": seconds, "verification_seconds": sum(VERIFYING), "candidates": near["candidates"],
                       "pairs": near["pairs"]})
    return examples / seconds, size / examples, examples


def _memory(pid: int) -> int:
    """Proportional set size of one process (shared pages split between the processes sharing them),
    in bytes. Not the resident set: a worker just forked and not yet started shares all its parent's
    pages, and adding both resident sets counted the parent twice (a one-sample spike of +500 MiB)."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):  # RSS: old kernels
        try:
            for line in open(path):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        except OSError:
            continue
    return 0


def tree_rss(pid: int) -> int:
    """Memory (proportional set size) of ``pid`` and all its descendants, in bytes (Linux /proc)."""
    children, total = {}, 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    stack = [pid]
    while stack:
        current = stack.pop()
        total += _memory(current)
        stack += children.get(current, [])
    return total


def peak_memory(root: str, out: str, max_side: int) -> tuple:
    """Peak process-tree RSS and the build process's own peak, building ``root`` as a subprocess."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "data_prep.build", "--dataset", "stanford_cars", "--root", root, "--out", out,
               "--max-side", str(max_side), "--no-progress", "--split", "stratified"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    process.wait()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"build failed: {' '.join(command)}")
    return peak[0]


def main() -> None:
    parser = command_parser("python -m benchmarks.bench_build", __doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--work", default="bench_out")
    parser.add_argument("--real", nargs="?", const=realphotos.PHOTOS, metavar="PHOTOS",
                        help="the real Stanford Cars photos instead of synthetic ones")
    parser.add_argument("--results", default=results.default_path("bench_build"), help="the results file written")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    big, small = os.path.join(args.work, "big"), os.path.join(args.work, "small")
    print(f"machine: {machine()}")
    if args.real:
        big, small = os.path.join(args.work, "real_big"), os.path.join(args.work, "real_small")
        count = realphotos.real_tree(args.real, big, args.images)
        realphotos.real_tree(args.real, small, args.small)
        what = "real Stanford Cars JPEGs (825 photos, 100–1,700 px wide, with mirrored/rotated re-encodes)"
    else:
        count = make_dataset(big, args.images)
        make_dataset(small, args.small)
        what = "synthetic 800×600 JPEGs"
    table = read_dataset("stanford_cars", big).table
    paths = [os.path.join(big, path) for path in table["image_path"]]
    print(f"dataset: {count} {what}; --max-side {args.max_side}; {workers} workers\n")

    rows = [("ceiling: decode + resize + encode, pool, no writing", ceiling(paths, naive_pil, args.max_side, workers)),
            ("build's per-image work (+ verify, hash), pool, no writing",
             ceiling(paths, same_work, args.max_side, workers))]
    top = rows[0][1]
    one, one_bytes, _ = timed_build(big, os.path.join(args.work, "out1"), 1, args.max_side)
    full, resized_bytes, _ = timed_build(big, os.path.join(args.work, "outN"), workers, args.max_side)
    full_build = dict(LAST_BUILD)
    passthrough, original_bytes, _ = timed_build(big, os.path.join(args.work, "outP"), workers, None)
    rows += [(f"build, 1 worker, --max-side {args.max_side}", one),
             (f"build, {workers} workers, --max-side {args.max_side}", full),
             (f"build, {workers} workers, original bytes kept", passthrough)]
    print(f"| {'throughput':<58} | images/s | vs ceiling |\n|{'-' * 60}|---------:|-----------:|")
    for name, value in rows:
        print(f"| {name:<58} | {value:8.1f} | {value / top:9.0%} |")
    print(f"\n| bytes per image | KiB |\n|---|---:|\n| original JPEGs (no --max-side) | {original_bytes / 1024:.1f} |"
          f"\n| --max-side {args.max_side} | {resized_bytes / 1024:.1f} |")
    small_peak = peak_memory(small, os.path.join(args.work, "mem_small"), args.max_side)
    big_peak = peak_memory(big, os.path.join(args.work, "mem_big"), args.max_side)
    print(f"\n| peak memory (build + workers) | MiB |\n|---|---:|\n| {args.small} images | {small_peak / MEBI:.0f} |"
          f"\n| {count} images | {big_peak / MEBI:.0f} |\n| ratio | {big_peak / small_peak:.2f} |")
    print(f"\ntargets: build with all workers ≥ 90% of the ceiling: {'met' if full >= 0.9 * top else 'NOT met'} "
          f"({full / top:.0%}); memory within 20%: {'met' if big_peak <= 1.2 * small_peak else 'NOT met'} "
          f"({big_peak / small_peak:.2f}×)")
    results.save("bench_build", {
        "images": count, "what": what, "max_side": args.max_side, "workers": workers,
        "throughput": [{"name": name, "images_per_s": value, "of_ceiling": value / top} for name, value in rows],
        "build": full_build, "kib_per_image": {"original": original_bytes / 1024, "resized": resized_bytes / 1024},
        "peak_mib": {"small": {"images": args.small, "mib": small_peak / MEBI},
                     "big": {"images": count, "mib": big_peak / MEBI}}},
        machine(), variant="real" if args.real else "synthetic", path=args.results)


if __name__ == "__main__":
    main()
