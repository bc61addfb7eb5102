"""``python -m eval.predict --model PATH IMAGE_OR_DIR … [--top-k 3] [--format table|json|csv]``.

For each photo the top-k classes of every head with their probabilities, and the make implied by
the model head (its probabilities summed per make). Files that cannot be read are reported on
stderr and the others are still predicted; the exit status is then 1.
"""
from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from common.cli import command_parser, run_main
from common.errors import UserError
from common.trust import OOD_SCORE, load_trust
from data_prep.manifest import data_card
from eval.datasource import check_heads, class_names, find_data, model_to
from eval.images import Problem, image_files, load_image
from eval.loading import MODEL_HELP, load_predictor
from eval.metrics import derived_probs
from eval.trust import trusted_predict

FORMATS = ("table", "json", "csv")
IMPLIED = "make_from_model"
IN_DISTRIBUTION = "in_distribution"
UNLIKE = "the photo does not look like the cars this model knows: no answer"


def trained_on_line(card: dict) -> str:
    """One line saying what a model was trained on (every output that shows a prediction carries it)."""
    classes = card.get("classes", {})
    counted = ", ".join(f"{count} {head}s" for head, count in classes.items())
    what = "synthetic demo pictures — not real cars" if card.get("synthetic") else f"{card.get('dataset')} photos"
    return f"model trained on {card.get('dataset')} ({what}; {counted})"


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> List[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": names[index], "probability": float(probs[index])} for index in order]


def implied_make(model_probs: np.ndarray, mapping: Sequence[int], makes: Sequence[str]) -> Optional[dict]:
    """The make whose models together have the highest probability."""
    if not (np.asarray(mapping) >= 0).any():
        return None
    totals = derived_probs(model_probs[None], mapping, len(makes))[0]
    best = int(np.argmax(totals))
    return {"class": makes[best], "probability": float(totals[best])}


class Recogniser:
    """A model with its class names: photos in, readable predictions out."""

    def __init__(self, model: str, data: Optional[str] = None, threads: Optional[int] = None):
        self.predictor = load_predictor(model, threads)
        manifest = find_data(model, data).manifest
        self.heads = check_heads(self.predictor.heads, manifest)
        self.names = class_names(manifest, manifest["heads"])
        self.mapping = model_to(manifest, "make") if "model" in self.heads else None
        # calibration and abstention: applied inside an export, else set beside the model by eval.test (None: not set)
        self.trust = self.predictor.trust or load_trust(model)
        self.outputs = trusted_predict(self.predictor, self.trust)
        self.card = self.trust.card if self.trust else data_card(manifest)

    def describe(self, probs: Dict[str, np.ndarray], index: int, k: int) -> dict:
        result = {head: top_k(probs[head][index], self.names[head], k) for head in self.heads}
        if self.mapping is not None:
            result[IMPLIED] = implied_make(probs["model"][index], self.mapping, self.names["make"])
        if OOD_SCORE in probs:
            score = float(probs[OOD_SCORE][index])
            result.update({OOD_SCORE: score, IN_DISTRIBUTION: bool(score <= self.trust.threshold)})
        return result

    def predict_arrays(self, images: Sequence[np.ndarray], k: int) -> List[dict]:
        """Images of equal size go through the model together; the order is kept."""
        results: List[Optional[dict]] = [None] * len(images)
        groups: Dict[tuple, List[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            probs = self.outputs(np.stack([images[i] for i in indices]))
            for position, index in enumerate(indices):
                results[index] = self.describe(probs, position, k)
        return results


def predict_files(recogniser: Recogniser, files: Sequence[str], k: int, batch_size: int = 16):
    """``(rows, problems)``: one row per readable file, a :class:`Problem` per unreadable one."""
    rows, problems = [], []
    for start in range(0, len(files), batch_size):
        loaded = []
        for path in files[start:start + batch_size]:
            try:
                loaded.append((path, load_image(path, recogniser.predictor.image_size)))
            except ValueError as error:
                problems.append(Problem(path, str(error)))
        predictions = recogniser.predict_arrays([image for _, image in loaded], k)
        rows += [{"file": path, **prediction} for (path, _), prediction in zip(loaded, predictions)]
    return rows, problems


def render_table(rows: List[dict], heads: Sequence[str], card: Optional[dict] = None) -> str:
    lines = [trained_on_line(card)] if card else []
    for row in rows:
        lines.append(row["file"])
        if row.get(IN_DISTRIBUTION) is False:
            lines.append(f"  out of distribution (score {row[OOD_SCORE]:.3f}): {UNLIKE}")
            continue
        width = max(len(head) for head in list(heads) + ([IMPLIED] if IMPLIED in row else []))
        for head in heads:
            choices = "  |  ".join(f"{item['class']} {item['probability']:.3f}" for item in row[head])
            lines.append(f"  {head:<{width}}  {choices}")
        if row.get(IMPLIED):
            lines.append(f"  {IMPLIED:<{width}}  {row[IMPLIED]['class']} {row[IMPLIED]['probability']:.3f}")
    return "\n".join(lines)


def render_csv(rows: List[dict], heads: Sequence[str], k: int) -> str:
    flat = []
    for row in rows:
        item = {"file": row["file"]}
        for head in heads:
            for rank, choice in enumerate(row[head], 1):
                item[f"{head}_{rank}"], item[f"{head}_{rank}_probability"] = choice["class"], choice["probability"]
        if row.get(IMPLIED):
            item[IMPLIED], item[f"{IMPLIED}_probability"] = row[IMPLIED]["class"], row[IMPLIED]["probability"]
        item.update({key: row[key] for key in (OOD_SCORE, IN_DISTRIBUTION) if key in row})
        flat.append(item)
    return pd.DataFrame(flat).to_csv(index=False, float_format="%.6f").rstrip("\n")


def render(rows: List[dict], problems, heads: Sequence[str], style: str, k: int, card: Optional[dict] = None) -> str:
    if style == "json":
        return json.dumps({"model": card or {}, "predictions": rows,
                           "errors": [{"file": p.path, "error": p.reason} for p in problems]},
                          indent=2, ensure_ascii=False)
    if not rows:
        return ""
    return render_csv(rows, heads, k) if style == "csv" else render_table(rows, heads, card)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m eval.predict", __doc__)
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument("--data", help="shards folder with manifest.json (default: next to the model)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--batch-size", type=int, default=16, help="images read and predicted together")
    args = parser.parse_args(argv)
    for flag, number in (("--top-k", args.top_k), ("--batch-size", args.batch_size)):
        if number < 1:
            raise UserError(f"{flag}: expected 1 or more (received {number})")
    files, problems = image_files(args.inputs)
    recogniser = Recogniser(args.model, args.data)
    rows, unreadable = predict_files(recogniser, files, args.top_k, args.batch_size)
    problems += unreadable
    if recogniser.trust is None:
        print("note: this model's calibration and abstention are not set (python -m eval.test sets them): "
              "every photo gets an answer, even one unlike the training data", file=sys.stderr)
    output = render(rows, problems, recogniser.heads, args.format, args.top_k, recogniser.card)
    if output:
        print(output)
    for problem in problems:
        print(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)
    if not rows:
        raise UserError("no image could be predicted" + (f" ({len(problems)} skipped, see above)" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
