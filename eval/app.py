"""``python -m eval.app --model PATH [--min-confidence 0.5] [--host 127.0.0.1] [--port 7860] [--share]``.

A listing-form web demo (Gradio): a seller uploads one or more photos of a car and gets the form's
fields — make, model, year, body type — filled in, each with its top-3 alternatives and their
confidence. Several photos of the same car are combined by averaging their probabilities. A field
whose best guess is below ``--min-confidence`` is left empty and the page says so, with the
alternatives to choose from, instead of pretending.

Gradio is an optional extra: ``pip install -r requirements-app.txt``. Everything but the page
itself (reading photos, combining, deciding what to fill) lives in :class:`FormFiller`, which has
no Gradio dependency.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from common.cli import command_parser, run_main
from common.errors import UserError
from data_prep.images import is_photo_name
from eval.images import decoded_megapixels, load_image
from eval.loading import MODEL_HELP
from eval.predict import Recogniser, implied_make, top_k

# the listing form's fields, in order: (head, label)
FIELDS = (("make", "Make"), ("model", "Model"), ("year", "Year"), ("type", "Body type"))
TITLE = "Sell your car: upload photos, get the listing form filled in"
ABSTAIN = ("The photo does not look like the cars this model knows: please fill in the form yourself.")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may cost: a public page must stay up when someone uploads a 13000 × 13000
    PNG (507 MB decoded), a 150 MB file or thirty photos at once."""

    max_photos: int = 12  # photos used per request; the rest are listed as skipped
    max_megabytes: float = 20.0  # per file; Gradio refuses larger uploads before they reach us
    max_megapixels: float = 40.0  # decoded size per photo (JPEGs are decoded at a reduced scale first)
    request_megapixels: float = 240.0  # decoded size of all the photos of one request together
    concurrency: int = 2  # requests predicted at the same time
    queue_size: int = 16  # requests waiting; more are refused with "queue is full"


@dataclasses.dataclass
class Field:
    head: str
    label: str
    value: str  # "" when not confident enough
    confidence: float
    alternatives: List[dict]  # top-k: {"class", "probability"}

    @property
    def confident(self) -> bool:
        return bool(self.value)


@dataclasses.dataclass
class Form:
    fields: List[Field]
    photos: int  # photos used
    problems: List[str]  # "name: reason" for photos that could not be read
    notes: List[str]  # low-confidence fields, disagreements between heads
    limited: str = ""  # what a limit left out (too many photos)
    unlike: int = 0  # photos set aside: they do not look like the cars the model knows

    def status(self) -> str:
        """The page's message in Markdown."""
        if not self.fields and self.unlike:
            return (f"**{ABSTAIN}**" + (f" ({self.unlike} photos)" if self.unlike > 1 else "")
                    + ("\n\nSkipped (could not be read):\n" + "\n".join(f"- {p}" for p in self.problems)
                       if self.problems else ""))
        if not self.fields and not self.problems:
            return "**Upload one or more photos of the car**, then press *Fill in the form*."
        if not self.fields:
            lines = ["**No photo could be read.** Upload JPEG, PNG, WebP, BMP, GIF or TIFF photos of the car."]
        else:
            used = "1 photo" if self.photos == 1 else f"{self.photos} photos combined"
            lines = [f"Filled from {used}." + ("" if self.notes else " All fields are confident.")]
            lines += [f"- {note}" for note in self.notes]
            if self.unlike:
                lines.append(f"{self.unlike} photo(s) set aside: they do not look like the cars this model knows.")
        if self.limited:
            lines.append(self.limited)
        if self.problems:
            lines.append("Skipped (could not be read):")
            lines += [f"- {problem}" for problem in self.problems]
        return "\n".join(lines)


class FormFiller:
    """Photos in, a filled :class:`Form` out; no Gradio here."""

    def __init__(self, recogniser, min_confidence: float = 0.5, top_k: int = 3, limits: Limits = Limits()):
        if not 0.0 <= min_confidence <= 1.0:
            raise UserError(f"--min-confidence: expected a probability between 0 and 1 (received {min_confidence})")
        if top_k < 1:
            raise UserError(f"--top-k: expected 1 or more (received {top_k})")
        for name, value in dataclasses.asdict(limits).items():
            if value <= 0:
                raise UserError(f"--{name.replace('_', '-')}: expected a positive number (received {value})")
        self.recogniser = recogniser
        self.min_confidence = min_confidence
        self.top_k = top_k
        self.limits = limits
        self.fields = [(head, label) for head, label in FIELDS if head in recogniser.heads]
        if not self.fields:
            raise UserError(f"the model has none of the listing form's heads {[h for h, _ in FIELDS]} "
                            f"(it has {list(recogniser.heads)})")

    def read(self, paths: Sequence[str]):
        """``(images, problems)`` for the uploaded files, in order; files over the size limit, pictures
        over the pixel limit and photos past the request's pixel budget are problems, never decoded.
        One photo is decoded at a time and kept only at twice the model's input size."""
        images, problems, spent = [], [], 0.0
        size, limits = self.recogniser.predictor.image_size, self.limits
        for path in paths:
            megabytes = os.path.getsize(path) / 1e6 if os.path.exists(path) else 0.0
            try:
                if megabytes > limits.max_megabytes:
                    raise ValueError(f"too large ({megabytes:.1f} MB; the limit is {limits.max_megabytes:g} MB)")
                cost = decoded_megapixels(path, size)
                if spent + cost > limits.request_megapixels:
                    raise ValueError(f"skipped: the photos before it already decode to {spent:.0f} megapixels, and "
                                     f"one request may decode {limits.request_megapixels:g}; upload fewer or "
                                     "smaller photos")
                images.append(load_image(path, size, limits.max_megapixels))
                spent += cost
            except ValueError as error:
                problems.append(f"{os.path.basename(path)}: {error}")
        return images, problems

    def probabilities(self, images: Sequence[np.ndarray]) -> Tuple[Optional[Dict[str, np.ndarray]], int]:
        """Per head the mean of the (calibrated) probability vectors of the photos that look like the
        training data (several views of one car), and how many photos were set aside as unlike it;
        ``None`` when every photo was."""
        per_head: Dict[str, List[np.ndarray]] = {head: [] for head in self.recogniser.heads}
        groups: Dict[tuple, List[np.ndarray]] = {}
        for image in images:
            groups.setdefault(image.shape, []).append(image)
        outputs = getattr(self.recogniser, "outputs", self.recogniser.predictor.predict)
        threshold = self.recogniser.trust.threshold if getattr(self.recogniser, "trust", None) else None
        unlike = 0
        for group in groups.values():
            probs = outputs(np.stack(group))
            keep = np.ones(len(group), bool)
            if threshold is not None and "ood_score" in probs:
                keep = np.asarray(probs["ood_score"]) <= threshold
                unlike += int((~keep).sum())
            for head in per_head:
                per_head[head].append(np.asarray(probs[head], dtype=np.float64)[keep])
        if not any(len(part) for part in next(iter(per_head.values()))):
            return None, unlike
        return {head: np.concatenate(parts).mean(axis=0) for head, parts in per_head.items()}, unlike

    def form(self, probs: Dict[str, np.ndarray], photos: int, problems: List[str]) -> Form:
        fields, notes = [], []
        for head, label in self.fields:
            alternatives = top_k(probs[head], self.recogniser.names[head], self.top_k)
            best = alternatives[0]
            confident = best["probability"] >= self.min_confidence
            fields.append(Field(head, label, best["class"] if confident else "", best["probability"], alternatives))
            if not confident:
                guesses = ", ".join(f"{item['class']} ({item['probability']:.0%})" for item in alternatives)
                notes.append(f"**{label}: not sure** — best guess below {self.min_confidence:.0%}; "
                             f"please choose: {guesses}.")
        if self.recogniser.mapping is not None and "make" in probs:
            implied = implied_make(probs["model"], self.recogniser.mapping, self.recogniser.names["make"])
            make = fields[0] if fields and fields[0].head == "make" else None
            if implied and make and make.alternatives[0]["class"] != implied["class"]:
                notes.append(f"The make and model heads disagree: make {make.alternatives[0]['class']}, "
                             f"while the model guess implies {implied['class']} ({implied['probability']:.0%}).")
        return Form(fields, photos, problems, notes)

    def fill(self, paths: Sequence[str]) -> Form:
        paths = [path for path in (paths or []) if path]
        if not paths:
            return Form([], 0, [], [])
        limited = ""
        if len(paths) > self.limits.max_photos:
            limited = (f"Only the first {self.limits.max_photos} of {len(paths)} photos were used "
                       f"(at most {self.limits.max_photos} per request).")
            paths = paths[:self.limits.max_photos]
        images, problems = self.read(paths)
        if not images:
            return Form([], 0, problems, [], limited)
        probs, unlike = self.probabilities(images)
        if probs is None:  # no photo looks like the cars the model knows: no field filled
            return Form([], 0, problems, [], limited, unlike)
        form = self.form(probs, len(images) - unlike, problems)
        form.limited, form.unlike = limited, unlike
        return form


def gradio():
    """Import Gradio, or say how to get it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise UserError("the web demo needs Gradio, an optional extra: pip install -r requirements-app.txt") from None
    return gradio


def outputs_of(form: Form, fields: Sequence[tuple]) -> list:
    """The page's output values: one text box and one label per field, then the status."""
    by_head = {field.head: field for field in form.fields}
    values, labels = [], []
    for head, _ in fields:
        field = by_head.get(head)
        values.append(field.value if field else "")
        labels.append({item["class"]: item["probability"] for item in field.alternatives} if field else None)
    return values + labels + [form.status()]


def model_card(card: dict) -> str:
    """What the model was trained on, its classes, its test accuracy and its date, in Markdown."""
    if not card:
        return ""
    what = ("**synthetic demo pictures — not real cars**" if card.get("synthetic")
            else f"photos of {card.get('dataset', 'an unknown dataset')}")
    classes = ", ".join(f"{count} {head}s" for head, count in card.get("classes", {}).items())
    accuracy = ", ".join(f"{head} {value:.0%}" for head, value in card.get("test_accuracy", {}).items())
    lines = [f"**Model card.** Trained on {what} ({card.get('dataset', 'unknown')}); it knows {classes}."]
    if accuracy:
        lines.append(f"Test accuracy: {accuracy}.")
    if card.get("set"):
        lines.append(f"Calibrated {str(card['set'])[:10]}.")
    elif card.get("data_built"):
        lines.append(f"Data built {str(card['data_built'])[:10]}.")
    if "threshold_set_on" not in card:
        lines.append("Its abstention is not set (python -m eval.test sets it): every photo gets an answer.")
    else:
        lines.append("Photos unlike its training data are not answered.")
    return " ".join(lines)


def thumbnail_paths(paths: Optional[Sequence[str]]) -> List[str]:
    """The uploaded files the gallery can show as thumbnails (photos; a PDF among them is left out)."""
    return [path for path in (paths or []) if path and is_photo_name(path)]


def build_app(filler: FormFiller):
    """The Gradio page; its fill function is also exposed to API clients as ``/fill``."""
    gr = gradio()
    with gr.Blocks(title="Car listing form") as app:
        gr.Markdown(f"# {TITLE}\nOne or more photos of the same car; the more views, the better the guess.")
        gr.Markdown(model_card(getattr(filler.recogniser, "card", {})), elem_id="model-card")
        with gr.Row():
            with gr.Column(scale=1):
                # no file_types: Gradio would refuse the whole request for one PDF; FormFiller lists
                # what is not a photo as skipped and uses the rest
                photos = gr.File(label=f"Photos of the car (up to {filler.limits.max_photos})",
                                 file_count="multiple", type="filepath", elem_id="photos")
                thumbnails = gr.Gallery(label="Your photos", elem_id="thumbnails", columns=4, height="auto",
                                        interactive=False, show_label=False)
                button = gr.Button("Fill in the form", variant="primary", elem_id="fill")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                boxes, labels = [], []
                for head, label in filler.fields:
                    with gr.Row(equal_height=True):
                        boxes.append(gr.Textbox(label=label, interactive=True, elem_id=f"field-{head}", scale=1,
                                                placeholder="not sure: choose from the alternatives"))
                        labels.append(gr.Label(label=f"{label}: top {filler.top_k}", num_top_classes=filler.top_k,
                                               show_heading=False, elem_id=f"alternatives-{head}", scale=1))

        def fill(paths):
            return outputs_of(filler.fill(paths), filler.fields)

        button.click(fill, inputs=photos, outputs=boxes + labels + [status], api_name="fill")
        photos.change(thumbnail_paths, inputs=photos, outputs=thumbnails, show_progress="hidden")
    return app.queue(default_concurrency_limit=filler.limits.concurrency, max_size=filler.limits.queue_size)


def launch(app, limits: Limits, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **options):
    """Serve the page; uploads over ``limits.max_megabytes`` are refused by Gradio with a message."""
    try:
        return app.launch(server_name=host, server_port=port, share=share,
                          max_file_size=f"{limits.max_megabytes:g}mb", **options)
    except (OSError, OverflowError) as error:  # the port is taken, or not a port
        raise UserError(f"cannot serve on {host}:{port} ({error}); choose another --port") from None


def parse_args(argv: Optional[Sequence[str]]):
    parser = command_parser("python -m eval.app", __doc__)
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--data", help="shards folder with manifest.json (default: next to the model)")
    parser.add_argument("--min-confidence", type=float, default=0.5,
                        help="below this a field is left empty and the page says so (default 0.5)")
    parser.add_argument("--top-k", type=int, default=3, help="alternatives shown per field")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="a public gradio.live link (Colab, Kaggle)")
    defaults = Limits()
    parser.add_argument("--max-photos", type=int, default=defaults.max_photos, help="photos used per request")
    parser.add_argument("--max-megabytes", type=float, default=defaults.max_megabytes, help="per uploaded file")
    parser.add_argument("--max-megapixels", type=float, default=defaults.max_megapixels,
                        help="decoded size per photo (JPEGs are decoded at a reduced scale first)")
    parser.add_argument("--request-megapixels", type=float, default=defaults.request_megapixels,
                        help="decoded size of all the photos of one request together")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="requests served at once")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size, help="requests allowed to wait")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: expected a port number from 1 to 65535 (received {args.port})")
    gradio()  # fail early, before loading the model, when the extra is missing
    limits = Limits(args.max_photos, args.max_megabytes, args.max_megapixels, args.request_megapixels,
                    args.concurrency, args.queue_size)
    filler = FormFiller(Recogniser(args.model, args.data), args.min_confidence, args.top_k, limits)
    app = build_app(filler)
    launch(app, limits, args.host, args.port, args.share, quiet=True, prevent_thread_lock=True)
    print(served_message(app.local_url, getattr(app, "share_url", None) if args.share else None), flush=True)
    app.block_thread()
    return 0


def served_message(local_url: str, share_url: Optional[str]) -> str:
    """Where the form is served, in this command's own words (Gradio's speak of ``launch()`` arguments)."""
    public = f"\npublic link: {share_url}" if share_url else "\na public link: add --share"
    return f"the listing form: {local_url}{public}\nCtrl+C stops it"


if __name__ == "__main__":
    sys.exit(run_main(main))
