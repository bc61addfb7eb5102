"""Benchmark of the listing form's memory: the peak resident memory of ``eval.app``'s form filler
while it serves requests of large photos, at the default limits.

Not a test: prints a table (and writes ``results.json``). The form filler of ``eval.app`` (without
the Gradio page: the same ``FormFiller.fill`` the page calls) is loaded with an EfficientNet-B0 at
224 px with random weights (``weights: none``; memory does not depend on the values) for the heads of
a small synthetic dataset. Each request holds ``--photos`` pictures, half flat-colour PNGs of
6300 × 6330 (132 KB on disk, 40 megapixels decoded: what took the server to 8.1 GB before photos
were downscaled when decoded) and half 6000 × 4000 camera JPEGs; ``--requests`` requests run at the
same time in threads, as Gradio's ``concurrency_limit`` runs them.

The resident set size is sampled every 5 ms; the table gives the process after the model was loaded
and warmed up (the baseline), the peak while serving, and the peak minus the baseline (what the
requests cost). ``--unbounded`` measures the old decoding (every photo kept at full size, no
per-request budget) — run it with fewer photos (``--photos 6 --requests 1``): at the defaults it
needs tens of gigabytes.

Usage: ``python -m benchmarks.bench_app_memory [--photos 12] [--requests 2] [--unbounded]
[--work bench_out/app_memory]``
"""
from __future__ import annotations

import os
import threading
import time

from common.cli import command_parser, quiet_tensorflow

quiet_tensorflow()  # before the project's modules import TensorFlow

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import results  # noqa: E402
from benchmarks.bench_build import machine  # noqa: E402
from benchmarks.bench_predict import build, prepare  # noqa: E402
from eval import images  # noqa: E402
from eval.app import FormFiller, Limits  # noqa: E402
from eval.predict import Recogniser  # noqa: E402


def resident_megabytes() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler(threading.Thread):
    """The largest resident set size seen, sampled every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, resident_megabytes(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, resident_megabytes())
            time.sleep(self.interval)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, resident_megabytes())


def make_photos(folder: str, count: int):
    """``count`` large photos: alternately a flat-colour PNG of 6300 × 6330 and a 6000 × 4000 JPEG."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index in range(count):
        if index % 2 == 0:
            path = os.path.join(folder, f"flat_{index}.png")
            if not os.path.exists(path):
                Image.new("RGB", (6300, 6330), (40 + 10 * index, 90, 160)).save(path, optimize=True)
        else:
            path = os.path.join(folder, f"camera_{index}.jpg")
            if not os.path.exists(path):
                noise = np.random.default_rng(index).integers(0, 256, (400, 600, 3), dtype=np.uint8)
                Image.fromarray(noise).resize((6000, 4000), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = command_parser("python -m benchmarks.bench_app_memory", __doc__)
    parser.add_argument("--photos", type=int, default=12, help="photos per request (default: the app's limit, 12)")
    parser.add_argument("--requests", type=int, default=2, help="requests at once (default: the app's, 2)")
    parser.add_argument("--unbounded", action="store_true", help="the old decoding: full size, no request budget")
    parser.add_argument("--work", default="bench_out/app_memory")
    args = parser.parse_args()
    shards, _ = prepare(os.path.join(args.work, "data"))
    model = build(shards, "efficientnet_b0", 224)
    photos = make_photos(os.path.join(args.work, "photos"), args.photos)
    limits = Limits()
    if args.unbounded:
        images.FIT_FACTOR = 10 ** 6  # keep every photo at its decoded size, as before
        limits = Limits(request_megapixels=float("inf"))
    filler = FormFiller(Recogniser(model), limits=limits)
    filler.fill(photos[:2])  # warm-up: tracing, allocation
    baseline = resident_megabytes()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    forms = []
    threads = [threading.Thread(target=lambda: forms.append(filler.fill(photos))) for _ in range(args.requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    assert len(forms) == args.requests and all(form.photos for form in forms), [form.problems for form in forms]
    result = {
        "decoding": "full size (before)" if args.unbounded else "downscaled (now)",
        "photos_per_request": args.photos, "requests_at_once": args.requests,
        "photos_used": forms[0].photos, "photos_skipped": len(forms[0].problems),
        "baseline_mb": round(baseline), "peak_mb": round(peak), "requests_mb": round(peak - baseline),
        "seconds": round(seconds, 1),
        "limits": {"max_megapixels": limits.max_megapixels, "request_megapixels": limits.request_megapixels},
    }
    print(f"{args.requests} requests of {args.photos} photos ({result['decoding']}): "
          f"{result['photos_used']} used, {result['photos_skipped']} skipped per request, {seconds:.1f} s")
    print(f"  {'resident memory':<34}{'MB':>8}")
    for label, key in (("after loading the model", "baseline_mb"), ("peak while serving", "peak_mb"),
                       ("the requests' share (peak − baseline)", "requests_mb")):
        print(f"  {label:<34}{result[key]:>8,}")
    results.save("bench_app_memory", result, machine(), variant="unbounded" if args.unbounded else "bounded")


if __name__ == "__main__":
    main()
