"""Render the measured numbers in ``README.md`` and ``docs/*.md`` from the results files that the
benchmarks and the demo write, so that a number is written once.

A rendered block in a Markdown file looks like::

    <!-- rendered: ood_candidates -->
    ...generated Markdown...
    <!-- /rendered -->

``python -m docs.render`` rewrites every block from its results file; ``--check`` changes nothing and
exits 1 naming each block that differs from its file (the test suite runs it).
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from common.cli import command_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
BLOCK = re.compile(r"(<!-- rendered: (?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /rendered -->)", re.S)

# name → (results file under docs/results, function of its contents → Markdown)
RENDERERS: Dict[str, Tuple[str, Callable[[dict], str]]] = {}


def renderer(name: str, results: str):
    def register(function):
        RENDERERS[name] = (results, function)
        return function

    return register


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def candidates_table(experiment: dict) -> str:
    names = [key for key in experiment["candidates"][0] if key != "score"]
    header = ["score"] + [f"{name} ({experiment['examples'][name]}): AUROC / accepted" for name in names]
    rows = [[row["score"]] + [f"{row[name]['auroc']:.3f} / {percent(row[name]['fpr_at_95_tpr'])}" for name in names]
            for row in experiment["candidates"]]
    return table(header, rows)


def operating_table(experiment: dict) -> str:
    point = experiment["saved_threshold"]
    names = [key for key in point if isinstance(point[key], dict)]
    rows = [["test split accepted", percent(point["in_accepted"]), str(experiment["examples"]["test"])]]
    rows += [[f"{name} rejected", percent(point[name]["rejected"]), str(point[name]["examples"])] for name in names]
    return table(["with the saved threshold", "share", "pictures"], rows)


def source_line(results: dict, file: str) -> str:
    return (f"Measured {results['date']} by `{results['command']}` on {results['machine']} "
            f"(`docs/results/{file}`).")


@renderer("ood_demo", "ood.json")
def ood_demo(results: dict) -> str:
    demo = results["demo"]
    return "\n\n".join([
        f"Demo model against its test split ({demo['examples']['test']} synthetic pictures). "
        "AUROC: how well the score separates the two sets (1 is perfect); accepted: the share of the outside "
        "pictures a threshold accepting 95% of the test split lets through.",
        candidates_table(demo), operating_table(demo), source_line(results, "ood.json")])


@renderer("ood_open_set", "ood.json")
def ood_open_set(results: dict) -> str:
    run = results["open_set"]
    setup = run["configuration"]
    accuracy = ", ".join(f"{head} {percent(value)}" for head, value in run["test_accuracy"].items())
    return "\n\n".join([
        f"Trained here on 10 of the 20 classes of the real photos ({run['examples']['train']} training photos; "
        f"{setup['backbone']}, weights {setup['weights']}, {setup['image_size']} px, {setup['epochs']} epochs, "
        f"{run['training_seconds']} s on the CPU); test accuracy {accuracy} on {run['examples']['test']} photos.",
        candidates_table(run), operating_table(run), source_line(results, "ood.json")])


def console(lines: Sequence[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"


@renderer("install", "bench_install.json")
def install(results: dict) -> str:
    minutes = results["seconds"] / 60
    took = f"{results['seconds']:.0f} s" if minutes < 2 else f"about {minutes:.0f} minutes"
    return (f"The install took {took} and {results['gigabytes']:.1f} GB "
            f"(measured {results['date']} by `{results['command']}` on {results['machine']}, from its package "
            "mirror without a pip cache).")


@renderer("demo_setup", "demo.json")
def demo_setup(results: dict) -> str:
    return (f"The demo ran {results['demo']['seconds']} s from a fresh checkout on {results['machine']} "
            f"(`docs/results/demo.json`, written by `{results['command']}` on {results['date']}).")


@renderer("demo_table", "demo.json")
def demo_table(results: dict) -> str:
    rows = [[head, str(value["classes"]), f"{value['accuracy']:.3f}",
             f"{value['top5']:.3f}" if value.get("top5") is not None else "–", f"{value['chance']:.3f}"]
            for head, value in results["demo"]["heads"].items()]
    return table(["head", "classes", "test accuracy", "top-5", "chance"], rows)


@renderer("demo_eval_console", "demo.json")
def demo_eval_console(results: dict) -> str:
    return console([line for line in results["eval_test"]["console"] if not line.startswith("  report:")])


@renderer("demo_compare", "demo.json")
def demo_compare(results: dict) -> str:
    return console(results["compare_console"])


@renderer("demo_tta", "demo.json")
def demo_tta(results: dict) -> str:
    plain = results["eval_test"]["heads"]
    return "On the demo: " + ", ".join(f"{head} {plain[head]['accuracy']:.3f} → {value:.3f}"
                                       for head, value in results["tta"].items() if head in plain) + "."


@renderer("demo_retrieval", "demo.json")
def demo_retrieval(results: dict) -> str:
    ks = results["retrieval"]
    return (f"On the demo's embeddings: k = {' / '.join(ks)} → {' / '.join(f'{v:.3f}' for v in ks.values())} "
            f"against the model head's {results['eval_test']['heads']['model']['accuracy']:.3f}.")


@renderer("demo_export", "demo.json")
def demo_export(results: dict) -> str:
    return table(["export of the demo model", "MB", "its check against the Keras model"],
                 [[name, f"{value['megabytes']:.1f}", value["check"].split(": ", 1)[-1]]
                  for name, value in results["export"].items()])


@renderer("demo_predict", "demo.json")
def demo_predict(results: dict) -> str:
    return console(results["predict_console"])


@renderer("demo_calibration", "demo.json")
def demo_calibration(results: dict) -> str:
    rows = [[head, f"{value['temperature']:.3f}", f"{value['ece_before']:.4f}", f"{value['ece_after']:.4f}"]
            for head, value in results["eval_test"]["calibration"].items()]
    return table(["head (demo model, test split)", "temperature", "ECE before", "ECE after"], rows)


@renderer("ood_summary", "ood.json")
def ood_summary(results: dict) -> str:
    demo, open_set = results["demo"], results["open_set"]
    knn = f"kNN distance, k = {10}"

    def auroc(experiment: dict, name: str) -> str:
        row = next(row for row in experiment["candidates"] if row["score"] == knn)
        return f"{row[name]['auroc']:.3f}"

    point, open_point = demo["saved_threshold"], open_set["saved_threshold"]
    rows = [["demo model (synthetic cars)", f"test split: {percent(point['in_accepted'])}",
             f"real car photos: {percent(point['real car photos']['rejected'])}",
             auroc(demo, "real car photos")],
            ["small CNN on 10 real classes (CPU)", f"test split: {percent(open_point['in_accepted'])}",
             f"unseen car models: {percent(open_point['unseen car models']['rejected'])}",
             auroc(open_set, "unseen car models")],
            ["", "", f"empty scenes: {percent(open_point['empty scenes']['rejected'])}",
             auroc(open_set, "empty scenes")]]
    return table(["model", "accepted", "abstained on", "AUROC"], rows) + "\n\n" + source_line(results, "ood.json")


def variants(results: dict) -> Dict[str, dict]:
    """A benchmark's runs by data set, synthetic first."""
    found = results["variants"]
    return {name: found[name] for name in sorted(found, key=lambda name: name != "synthetic")}


def sources(results: dict, file: str) -> str:
    runs = variants(results).values() if "variants" in results else [results]
    return " ".join(f"Measured {run['date']} by `{run['command']}` on {run['machine']}." for run in runs) + \
        f" (`docs/results/{file}`)"


def count(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


@renderer("build_throughput", "bench_build.json")
def build_throughput(results: dict) -> str:
    runs = variants(results)
    header = ["images/s (share of the ceiling)"] + [f"{name}: {run['images']:,} images" for name, run in runs.items()]
    names = [row["name"] for row in next(iter(runs.values()))["throughput"]]
    rows = [[name] + [next(f"{count(row['images_per_s'], 1)} ({percent(row['of_ceiling'])})"
                           for row in run["throughput"] if row["name"] == name) for run in runs.values()]
            for name in names]
    return table(header, rows) + "\n\n" + sources(results, "bench_build.json")


@renderer("build_details", "bench_build.json")
def build_details(results: dict) -> str:
    runs = variants(results)
    names = list(runs)
    rows = [["KiB per image: original JPEGs"] + [count(run["kib_per_image"]["original"], 1) for run in runs.values()],
            [f"KiB per image: `--max-side {next(iter(runs.values()))['max_side']}`"]
            + [count(run["kib_per_image"]["resized"], 1) for run in runs.values()],
            ["pHash candidates / verified same-photo pairs"]
            + [f"{run['build']['candidates']:,} / {run['build']['pairs']:,}" for run in runs.values()],
            ["near-duplicate verification, seconds of the build"]
            + [f"{run['build']['verification_seconds']:.1f} of {run['build']['seconds']:.1f}" for run in runs.values()],
            ["peak memory, build + workers (MiB, proportional set size): small set"]
            + [f"{count(run['peak_mib']['small']['mib'])} ({run['peak_mib']['small']['images']:,} images)"
               for run in runs.values()],
            ["peak memory: full set"]
            + [f"{count(peak['big']['mib'])} ({peak['big']['mib'] / peak['small']['mib']:.2f}×)"
               for peak in (run["peak_mib"] for run in runs.values())]]
    return table([""] + names, rows)


@renderer("training_pipeline", "bench_training.json")
def training_pipeline(results: dict) -> str:
    runs = variants(results)
    names = [row["name"] for row in next(iter(runs.values()))["pipelines"]]
    rows = [[name] + [count(next(row["images_per_s"] for row in run["pipelines"] if row["name"] == name))
                      for run in runs.values()] for name in names]
    rows.append(["**ours (320-px shards, 224 crop, device augmentation) / report 004's reader**"]
                + [f"**{run['report004_ratio']:.1f}×**" for run in runs.values()])
    rows.append(["ours / decode ceiling of the 320-px shards"] + [percent(run["of_ceiling"]) for run in runs.values()])
    rows.append(["one epoch (40 steps, small CNN, 96 px): `training.fit` / bare `model.fit`"]
                + [f"{run['epoch']['training_fit_s']:.2f} s / {run['epoch']['model_fit_s']:.2f} s "
                   f"({100 * (run['epoch']['training_fit_s'] / run['epoch']['model_fit_s'] - 1):+.1f}%)"
                   for run in runs.values()])
    header = ["pipeline (images/s)"] + [f"{name}: {run['images']:,} images" for name, run in runs.items()]
    return table(header, rows) + "\n\n" + sources(results, "bench_training.json")


@renderer("backends", "bench_backends.json")
def backends(results: dict) -> str:
    steps = table(["model", "CPU devices", "TensorFlow ms/step", "JAX ms/step", "JAX / TensorFlow"],
                  [[row["model"], str(row["devices"]), count(row["tensorflow_ms"]), count(row["jax_ms"]),
                    f"{row['jax_ms'] / row['tensorflow_ms']:.2f}×"] for row in results["step_times"]])
    layers = table(["one layer, batch 32", "backend", "forward ms", "forward + backward ms"],
                   [[row["layer"], row["backend"], f"{row['forward_ms']:.1f}", f"{row['forward_backward_ms']:.1f}"]
                    for row in results["layers"]])
    versions = ", ".join(f"{name} {version}" for name, version in results["versions"].items())
    return "\n\n".join([steps, f"JAX without `jit_compile`, demo CNN, one device: "
                                f"{count(results['jax_without_jit_ms'])} ms/step.", layers,
                         sources(results, "bench_backends.json") + f"; {versions}."])


@renderer("predict", "bench_predict.json")
def predict(results: dict) -> str:
    rows = [[row["model"], row["format"], f"{row['median_ms']:.2f}", f"{row['p95_ms']:.2f}",
             count(row["throughput"], 1), f"{row['speedup']:.2f}×"] for row in results["rows"]]
    return table(["backbone, input", "artefact", "median ms / image", "p95 ms", f"images/s (batch {results['batch']})",
                  "speed-up (median)"], rows) + "\n\n" + sources(results, "bench_predict.json")


@renderer("app_memory", "bench_app_memory.json")
def app_memory(results: dict) -> str:
    runs = results["variants"]
    order = [name for name in ("bounded", "unbounded") if name in runs]
    rows = [[runs[name]["decoding"], f"{runs[name]['requests_at_once']} × {runs[name]['photos_per_request']}",
             str(runs[name]["photos_used"]), count(runs[name]["baseline_mb"]), count(runs[name]["peak_mb"]),
             count(runs[name]["requests_mb"])] for name in order]
    return table(["decoding", "requests × photos", "photos used per request", "after loading (MB)", "peak (MB)",
                  "the requests' share (MB)"], rows) + "\n\n" + sources(results, "bench_app_memory.json")


@renderer("samephoto", "bench_samephoto.json")
def samephoto(results: dict) -> str:
    rows = [[row["copy"], percent(row["candidates"]), percent(row["found"])] for row in results["recall"]]
    rows.append(["**all copies**", "", f"**{percent(results['recall_all'])}**"])
    same = [pair["similarity"] for pair in results["pairs"] if pair["judged"] == "same"]
    different = [pair for pair in results["pairs"] if pair["judged"] not in ("same", None)]
    lines = [f"Recall on copies the script makes of {results['sample']} of the {results['photos']} photos "
             f"(pHash within {results['threshold_bits']} bits, then similarity ≥ {results['same_photo']}):",
             table(["copy", "pHash candidates", "verified same photo"], rows),
             f"Precision on the {results['photos']} photos: of {results['candidates']} pHash candidates, "
             f"{results['verified']} are verified as the same photo; {results['wrong']} of those were judged by eye "
             f"not to be, and {results['missed']} pairs judged the same photo were missed."
             + (f" The same-photo pairs score {min(same):.2f}–{max(same):.2f}" if same else "")
             + (f"; the look-alikes judged different at most {max(p['similarity'] for p in different):.2f}."
                if different else "."),
             sources(results, "bench_samephoto.json")]
    return "\n\n".join(lines)


def blocks(text: str):
    return list(BLOCK.finditer(text))


def render_text(text: str, cache: Dict[str, dict], where: str) -> str:
    def replace(match):
        name = match.group("name")
        if name not in RENDERERS:
            raise SystemExit(f"{where}: unknown rendered block {name!r} (known: {', '.join(sorted(RENDERERS))})")
        file, function = RENDERERS[name]
        if file not in cache:
            with open(os.path.join(RESULTS, file), encoding="utf-8") as handle:
                cache[file] = json.load(handle)
        return match.group(1) + function(cache[file]).rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(replace, text)


def documents(root: str = ROOT) -> List[str]:
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def render_all(check: bool, files: Optional[Sequence[str]] = None) -> List[str]:
    """The files whose blocks differ from their results (rewritten unless ``check``)."""
    stale, cache = [], {}
    for path in files or documents():
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        rendered = render_text(text, cache, path)
        if rendered != text:
            stale.append(os.path.relpath(path, ROOT))
            if not check:
                with open(path + ".partial", "w", encoding="utf-8") as handle:
                    handle.write(rendered)
                os.replace(path + ".partial", path)
    return stale


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m docs.render", __doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    args = parser.parse_args(argv)
    stale = render_all(args.check)
    if args.check and stale:
        print(f"stale rendered blocks in {', '.join(stale)}: run python -m docs.render")
        return 1
    print(f"{'rewrote ' + ', '.join(stale) if stale else 'every rendered block agrees with its results file'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
