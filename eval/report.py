"""``metrics.json``, ``report.md``, per-class CSVs and figures of an evaluation, and its summary."""
from __future__ import annotations

import json
from typing import Dict

import numpy as np
import pandas as pd

from common import fs
from eval.figures import confusion_figure, reliability_figure

COLUMNS = ("classes", "accuracy", "top5", "loss", "macro_f1", "weighted_f1", "ece")


def summary_rows(heads: Dict[str, dict]) -> list:
    return [{"head": head, "classes": m["classes"], "accuracy": m["accuracy"], "top5": m["top5"], "loss": m["loss"],
             "macro_f1": m["macro"]["f1"], "weighted_f1": m["weighted"]["f1"], "ece": m["calibration"]["ece"]}
            for head, m in heads.items()]


def markdown_table(rows, columns) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else "—" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: str, title: str, heads: Dict[str, dict], hierarchy: dict, names: Dict[str, list]) -> dict:
    """Write everything; return the JSON-able metrics (confusion matrices live in the figures/CSVs)."""
    fs.makedirs(fs.join(out, "figures"))
    sections = [f"# {title}", "", markdown_table(summary_rows(heads), ("head",) + COLUMNS), ""]
    if hierarchy:
        rows = [{"head": head, "predicted model belongs to the predicted class": h["model_within_predicted"],
                 "accuracy derived from the model head": h["accuracy_from_model_head"],
                 "accuracy of its own head": h["accuracy_own_head"]} for head, h in hierarchy.items()]
        sections += ["## Hierarchy", "", "Heads the model class determines: consistency of the predictions, and "
                     "the accuracy obtained by summing the model head's probabilities per class.", "",
                     markdown_table(rows, list(rows[0])), ""]
    for head, metrics in heads.items():
        figure = fs.join(out, "figures", f"confusion_{head}.png")
        confusion_figure(metrics["confusion_matrix"], names[head], head, figure)
        reliability_figure(metrics["calibration"]["bins"], metrics["calibration"]["ece"], head,
                           fs.join(out, "figures", f"reliability_{head}.png"))
        table = pd.DataFrame(metrics["per_class"]).to_csv(index=False)
        fs.write_text_atomic(fs.join(out, f"per_class_{head}.csv"), table)
        sections += [f"## {head}", "",
                     f"Macro precision / recall / F1: {metrics['macro']['precision']:.4f} / "
                     f"{metrics['macro']['recall']:.4f} / {metrics['macro']['f1']:.4f}; weighted: "
                     f"{metrics['weighted']['precision']:.4f} / {metrics['weighted']['recall']:.4f} / "
                     f"{metrics['weighted']['f1']:.4f}. Per class: [per_class_{head}.csv](per_class_{head}.csv).", "",
                     f"![confusion {head}](figures/confusion_{head}.png) "
                     f"![reliability {head}](figures/reliability_{head}.png)",
                     ""]
        if metrics["confused_pairs"]:
            sections += ["Most confused pairs:", "",
                         markdown_table(metrics["confused_pairs"][:10], ("true", "predicted", "count", "share")), ""]
    fs.write_text_atomic(fs.join(out, "report.md"), "\n".join(sections))
    plain = {head: {key: value for key, value in m.items() if key != "confusion_matrix"} for head, m in heads.items()}
    return {"heads": plain, "hierarchy": hierarchy}


def print_evaluation(title: str, metrics: dict, out: str) -> None:
    print(f"\n{title}")
    print(f"  {'head':<10}" + "".join(f"{c:>12}" for c in COLUMNS))
    for row in summary_rows(metrics["heads"]):
        print(f"  {row['head']:<10}" + "".join(f"{row[c]:>12.4f}" if isinstance(row[c], float)
                                                else f"{'—' if row[c] is None else row[c]:>12}" for c in COLUMNS))
    for head, h in (metrics.get("hierarchy") or {}).items():
        print(f"  {head} from the model head {h['accuracy_from_model_head']:.2%} (own head "
              f"{h['accuracy_own_head']:.2%}); predicted model within the predicted {head} "
              f"{h['model_within_predicted']:.2%}")
    print(f"  report: {fs.join(out, 'report.md')}")


def write_predictions(path: str, result: dict, names: Dict[str, list]) -> None:
    """One row per image: id, and per head the true class, the predicted class and its probability."""
    columns = {"id": result["ids"]}
    for head, probs in result["probs"].items():
        predicted, labels = probs.argmax(axis=1), result["labels"][head]
        columns[f"{head}_true"] = [names[head][label] if label >= 0 else "" for label in labels]
        columns[f"{head}_predicted"] = [names[head][index] for index in predicted]
        columns[f"{head}_probability"] = np.round(probs.max(axis=1), 6)
    fs.write_text_atomic(path, pd.DataFrame(columns).to_csv(index=False))


def save_json(path: str, value: dict) -> None:
    fs.write_text_atomic(path, json.dumps(value, indent=2))
