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

import argparse
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


@renderer("demo_setup", "demo.json")
def demo_setup(results: dict) -> str:
    return (f"Measured on {results['machine']}: the installed environment takes "
            f"{results['environment_gb']:.1f} GB; the demo ran {results['demo']['seconds']} s from a fresh "
            f"checkout (`docs/results/demo.json`, written by `{results['command']}` on {results['date']}).")


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
