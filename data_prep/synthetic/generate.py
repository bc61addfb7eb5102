"""Rendering the pictures of a synthetic dataset, its near-duplicates and its deliberately bad files."""
from __future__ import annotations

import dataclasses
import io
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from data_prep.synthetic.catalog import CarClass
from data_prep.synthetic.draw import draw_car

# Bad files written in place of some good pictures; the first two cannot be decoded.
UNDECODABLE = ("zero_byte", "truncated")
DUPLICATE_FRACTION = 0.05


@dataclasses.dataclass
class Picture:
    """One image of the dataset: its class, bytes, 1-based box, viewpoint code and provenance."""

    class_index: int
    data: bytes
    bbox: Tuple[int, int, int, int]
    viewpoint: int
    duplicate_of: Optional[int] = None  # index of the picture this one nearly copies
    lookalike_of: Optional[int] = None  # index of a different picture (another class) pHash pairs it with
    bad_kind: Optional[str] = None  # a key of SPOILERS, "missing", or None
    size: Tuple[int, int] = (0, 0)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def picture_size(rng, size: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The fixed ``size`` or a varied one (192–384 px wide, aspect 1.2–1.6)."""
    if size:
        return size
    width = int(rng.integers(192, 385))
    return width, int(width / rng.uniform(1.2, 1.6))


def render(classes: Sequence[CarClass], images_per_class: int, seed: int, viewpoints: Sequence[int],
           size: Optional[Tuple[int, int]] = None, label_conflicts: int = 0, lookalikes: int = 0) -> List[Picture]:
    """Draw ``images_per_class`` pictures per class, then near-copies of about 5% of them;
    ``label_conflicts`` more near-copies filed under another class (the same photo under two labels,
    as Stanford Cars has), and ``lookalikes`` pairs of different cars that pHash finds alike."""
    rng = np.random.default_rng(seed)
    pictures = []
    for class_index, car in enumerate(classes):
        for _ in range(images_per_class):
            width, height = picture_size(rng, size)
            viewpoint = int(rng.choice(viewpoints))
            image, bbox = draw_car(car, rng, width, height, viewpoint)
            pictures.append(Picture(class_index, encode_jpeg(image, rng.integers(82, 96)), bbox, viewpoint,
                                    size=(width, height)))
    originals = len(pictures)
    for source in rng.choice(originals, size=max(1, int(DUPLICATE_FRACTION * originals)), replace=False):
        pictures.append(near_copy(pictures[int(source)], int(source), rng))
    if len(classes) > 1:
        for source in rng.choice(originals, size=min(label_conflicts, originals), replace=False):
            copy = near_copy(pictures[int(source)], int(source), rng)
            copy.class_index = (copy.class_index + 1) % len(classes)  # the same make's next model, mostly
            pictures.append(copy)
        for _ in range(lookalikes):
            pictures.extend(lookalike_pair(classes, rng, len(pictures), viewpoints, size))
    return pictures


def lookalike_pair(classes: Sequence[CarClass], rng, first_index: int, viewpoints: Sequence[int],
                   size: Optional[Tuple[int, int]] = None) -> List[Picture]:
    """Two different photos that share their layout: the second has the first one's coarse picture
    (heavily blurred) and the fine detail of a photo of another class — what two studio shots of
    different cars in the same pose on the same background are to real photos. pHash, which sees
    only the coarse picture, pairs them; the verification, which compares detail, must not."""
    first, second = (int(value) for value in rng.choice(len(classes), size=2, replace=False))
    width, height = picture_size(rng, size)
    viewpoint = int(rng.choice(viewpoints))
    base, box = draw_car(classes[first], rng, width, height, viewpoint)
    other, _ = draw_car(classes[second], rng, width, height, viewpoint)
    radius = max(width, height) / 24
    coarse = np.asarray(base.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    detail = np.asarray(other, dtype=np.float32) - np.asarray(other.filter(ImageFilter.GaussianBlur(radius)),
                                                              dtype=np.float32)
    mixed = Image.fromarray(np.clip(coarse + detail, 0, 255).astype(np.uint8))
    return [Picture(first, encode_jpeg(base, 92), box, viewpoint, size=(width, height)),
            Picture(second, encode_jpeg(mixed, 92), box, viewpoint, size=(width, height), lookalike_of=first_index)]


def near_copy(picture: Picture, source: int, rng) -> Picture:
    """A re-posted copy: rescaled by a few percent, slightly brighter or darker, re-encoded."""
    image = Image.open(io.BytesIO(picture.data)).convert("RGB")
    factor = rng.uniform(0.85, 1.1)
    width, height = max(16, int(image.width * factor)), max(16, int(image.height * factor))
    image = ImageEnhance.Brightness(image.resize((width, height))).enhance(rng.uniform(0.92, 1.08))
    x1, y1, x2, y2 = picture.bbox
    bbox = tuple(max(1, min(limit, int(round(v * factor)))) for v, limit in
                 ((x1, width), (y1, height), (x2, width), (y2, height)))
    return Picture(picture.class_index, encode_jpeg(image, rng.integers(70, 95)), bbox, picture.viewpoint,
                   duplicate_of=source, size=(width, height))


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# kind → the bad bytes, from (the picture's JPEG bytes, the decoded image)
SPOILERS: Dict[str, Callable[[bytes, Image.Image], bytes]] = {
    "zero_byte": lambda data, image: b"",
    "truncated": lambda data, image: data[: len(data) * 3 // 5],
    "png_named_jpg": lambda data, image: _png(image),
    "grayscale": lambda data, image: encode_jpeg(image.convert("L"), 90),
    "cmyk": lambda data, image: encode_jpeg(image.convert("CMYK"), 90),
}


def make_bad(picture: Picture, kind: str) -> None:
    """Replace a picture's bytes by a bad variant of the same image (in place)."""
    picture.data = SPOILERS[kind](picture.data, Image.open(io.BytesIO(picture.data)))
    picture.bad_kind = kind


def spoil(pictures: List[Picture], seed: int, missing: bool = True) -> None:
    """Turn a few original pictures into one bad file of each kind (and one listed-but-missing file)."""
    rng = np.random.default_rng(seed + 7)
    candidates = [index for index, picture in enumerate(pictures)
                  if picture.duplicate_of is None and picture.lookalike_of is None]
    kinds = list(SPOILERS) + (["missing"] if missing else [])
    used = {picture.duplicate_of for picture in pictures if picture.duplicate_of is not None} | \
        {picture.lookalike_of for picture in pictures if picture.lookalike_of is not None}
    chosen = [index for index in rng.permutation(candidates) if index not in used][:len(kinds)]
    for index, kind in zip(chosen, kinds):
        if kind == "missing":
            pictures[index].bad_kind = "missing"
        else:
            make_bad(pictures[index], kind)
