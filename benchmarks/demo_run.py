"""The demo as a newcomer runs it, from nothing, with every follow-up command; its numbers written once.

Runs ``python -m training.fit --config demo.yaml`` into a fresh folder (synthetic data generated,
shards built, a small CNN trained: the wall time is what a fresh checkout takes), then on the model
it wrote ``eval.test`` (with and without ``--tta``, and ``--ood`` on the real photos of ``../shared``
when present), ``eval.retrieval --k 1 3 13``, ``eval.compare``, ``eval.export`` (SavedModel, TFLite,
quantised TFLite) and ``eval.predict`` on one picture. Writes ``docs/results/demo.json`` (with the
machine) and refreshes ``docs/sample_report/`` from the same run, so that the README's demo table,
the sample report and the compare block cannot disagree (``python -m docs.render`` renders them).

Usage: ``python -m benchmarks.demo_run [--work bench_out/demo] [--results docs/results/demo.json]``
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from benchmarks.bench_build import machine
from benchmarks.realphotos import PHOTOS
from common.cli import command_parser

SAMPLE = os.path.join("docs", "sample_report")


def run(*argv: str) -> str:
    """A project command as a user types it; its standard output (stops on failure, showing why)."""
    done = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"python -m {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def environment_gigabytes() -> float:
    total = 0
    for folder, _, files in os.walk(sys.prefix):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return round(total / 1e9, 1)


def size(path: str) -> int:
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, "**"), recursive=True) if os.path.isfile(p))


def read(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def refresh_sample(run_folder: str, report: str, retrieval: str) -> None:
    """``docs/sample_report/{eval,retrieval,curves}`` from this run (replaced as a whole)."""
    for name, source in (("eval", report), ("retrieval", retrieval)):
        target = os.path.join(SAMPLE, name)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("predictions.csv", "neighbours.csv"))
    os.makedirs(os.path.join(SAMPLE, "curves"), exist_ok=True)
    shutil.copy(os.path.join(run_folder, "curves", "model.png"), os.path.join(SAMPLE, "curves", "model.png"))


def main(argv=None) -> int:
    parser = command_parser("python -m benchmarks.demo_run", __doc__)
    parser.add_argument("--work", default="bench_out/demo")
    parser.add_argument("--results", default="docs/results/demo.json")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    folder, data = os.path.join(args.work, "demo"), os.path.join(args.work, "demo_data", "shards")
    started = time.perf_counter()
    console = run("training.fit", "--config", "demo.yaml", "--out", folder, "--set", f"data.shards={data}")
    seconds = time.perf_counter() - started
    model = os.path.join(folder, "model.keras")
    report, tta = os.path.join(folder, "eval_model_test"), os.path.join(folder, "eval_model_test_tta")
    retrieval = os.path.join(folder, "retrieval")
    ood = ["--ood", PHOTOS] if os.path.isdir(PHOTOS) else []
    test_console = run("eval.test", "--model", model, "--out", report, *ood)
    run("eval.test", "--model", model, "--out", tta, "--tta")
    run("eval.retrieval", "--model", model, "--k", "1", "3", "13", "--out", retrieval)
    compare_console = run("eval.compare", folder, report, "--metrics", "accuracy")
    exports = {}
    for name, options in (("SavedModel", ["--format", "savedmodel"]), ("TFLite", ["--format", "tflite"]),
                          ("TFLite, quantised", ["--format", "tflite", "--quantize"])):
        out = os.path.join(folder, "export", "quantized.tflite" if "quantised" in name else
                           ("model.tflite" if name == "TFLite" else "savedmodel"))
        exports[name] = (out, run("eval.export", "--model", model, *options, "--out", out).strip().splitlines())
    picture = sorted(glob.glob(os.path.join(args.work, "demo_data", "raw", "**", "*.jpg"), recursive=True))[0]
    predict_console = run("eval.predict", "--model", model, picture)
    tested, tta_metrics = read(os.path.join(report, "metrics.json")), read(os.path.join(tta, "metrics.json"))
    by_k = read(os.path.join(retrieval, "metrics.json"))["by_k"]
    results = {
        "machine": machine(), "date": datetime.date.today().isoformat(),
        "command": "python -m benchmarks.demo_run", "environment_gb": environment_gigabytes(),
        "demo": {"seconds": round(seconds), "heads": read(os.path.join(folder, "metrics.json"))["heads"],
                 "last_lines": console.strip().splitlines()[-8:]},
        "eval_test": {"console": test_console.strip().splitlines(),
                      "heads": {head: {key: value[key] for key in ("accuracy", "loss", "calibration") if key in value}
                                for head, value in tested["heads"].items()},
                      "calibration": tested.get("calibration"), "abstention": tested.get("abstention"),
                      "ood": tested.get("ood")},
        "tta": {head: value["accuracy"] for head, value in tta_metrics["heads"].items()},
        "retrieval": {str(entry["k"]): entry["accuracy"] for entry in by_k},
        "compare_console": compare_console.strip().splitlines(),
        "export": {name: {"megabytes": round(size(path) / 1e6, 1), "check": printed[-1].strip()}
                   for name, (path, printed) in exports.items()},
        "predict_console": [line.replace(os.path.join(args.work, ""), "runs/") for line in
                            predict_console.strip().splitlines()],
    }
    refresh_sample(folder, report, retrieval)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results + ".partial", "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1, ensure_ascii=False)
    os.replace(args.results + ".partial", args.results)
    print(f"demo {results['demo']['seconds']} s; written {args.results} and {SAMPLE}/ (python -m docs.render next)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
