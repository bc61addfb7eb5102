"""Per-image work done in worker processes: read, validate, convert, crop, resize, hash.

Nothing here imports TensorFlow, so worker processes start fast and stay small. Original JPEG bytes
are kept unless a transformation is asked for or the file is not an RGB JPEG (grayscale, CMYK,
PNG named ``.jpg``, …), which are re-encoded as RGB JPEG. Every image is fully entropy-decoded
(at reduced DCT scale where possible, which is several times cheaper), so nothing undecodable is
ever written. A photo whose EXIF orientation says it is stored turned is turned upright, as
``eval.predict`` and the listing form turn it, and its box with it (annotated boxes refer to the
stored pixel grid). Every format in :data:`PHOTO_SUFFIXES` is read. Results are small picklable objects.
"""
from __future__ import annotations

import dataclasses
import io
from typing import List, Optional, Tuple, Union

from PIL import Image

from common import fs

PASSTHROUGH_FORMATS = ("JPEG", "MPO")  # MPO: camera JPEGs with an extra picture; TF decodes them
# The photo formats read everywhere — the build, eval.predict and the listing form: what Pillow decodes,
# and HEIC/HEIF (how phones store photos) through the pillow-heif plugin.
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff",
                   ".webp", ".avif", ".jp2", ".j2k", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi")
HEIF_SUFFIXES = (".heic", ".heif")
PHOTO_SUFFIXES = PILLOW_SUFFIXES + HEIF_SUFFIXES
ORIENTATION_TAG = 0x0112  # EXIF: how the stored pixels must be turned to show the photo upright
TURNED = "turned upright"
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits per pixel
HASH_DECODE_SIDE = 128


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """Transformations applied while writing shards (all off by default: bytes kept as they are)."""

    max_side: Optional[int] = None
    crop: Optional[str] = None  # None or "bbox"
    crop_margin: float = 0.1
    jpeg_quality: int = 95
    bbox_tolerance: float = 0.02  # fraction of the image side a box may overhang (then clipped)


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image to process: absolute path, 1-based pixel box (or ``None``), whether to hash it."""

    path: str
    bbox: Optional[Tuple[int, int, int, int]]
    want_hash: bool = True


@dataclasses.dataclass(frozen=True)
class Processed:
    encoded: bytes
    height: int
    width: int
    bbox: Tuple[float, float, float, float]  # normalised ymin, xmin, ymax, xmax
    phash: Optional[str]
    converted: Optional[str]  # why it was re-encoded (None: original bytes kept)


@dataclasses.dataclass(frozen=True)
class Rejected:
    reason: str


Result = Union[Processed, Rejected]

# EXIF orientation → the transposition that shows the stored pixels upright (as ImageOps.exif_transpose)
TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def is_photo_name(name: str) -> bool:
    return name.lower().endswith(PHOTO_SUFFIXES) and not fs.undecodable(name)


def not_a_photo(name: str) -> str:
    """The reason a file that is not a photo is skipped (listed in rejected.csv)."""
    if fs.undecodable(name):
        return "its file name is not valid UTF-8 (shown with \\xNN for those bytes): rename the file"
    suffix = "." + name.rsplit(".", 1)[1].lower() if "." in name.lstrip(".") else "no suffix"
    return f"not a photo ({suffix}); photos are read in these formats: {', '.join(PHOTO_SUFFIXES)}"


_HEIF: List[bool] = []


def heif_available() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow, once per process; whether it is installed."""
    if not _HEIF:
        try:
            import pillow_heif  # optional: HEIC/HEIF photos
        except ImportError:
            _HEIF.append(False)
        else:
            pillow_heif.register_heif_opener()
            _HEIF.append(True)
    return _HEIF[0]


def check_heif(name: str) -> None:
    """A HEIC/HEIF photo without pillow-heif: a ``ValueError`` saying what to install."""
    if name.lower().endswith(HEIF_SUFFIXES) and not heif_available():
        raise ValueError("a HEIC/HEIF photo, which needs pillow-heif to be read (pip install pillow-heif)")


def orientation(image) -> int:
    """The EXIF orientation (1 = stored upright; 2–8 = flipped or turned)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block: take the pixels as stored
        return 1
    return value if value in TRANSPOSES else 1


def turned_box(box: Tuple[float, float, float, float], turn: int) -> Tuple[float, float, float, float]:
    """A normalised (ymin, xmin, ymax, xmax) box of the stored picture, in the picture turned upright."""
    ymin, xmin, ymax, xmax = box
    return {1: box, 2: (ymin, 1 - xmax, ymax, 1 - xmin), 3: (1 - ymax, 1 - xmax, 1 - ymin, 1 - xmin),
            4: (1 - ymax, xmin, 1 - ymin, xmax), 5: (xmin, ymin, xmax, ymax), 6: (xmin, 1 - ymax, xmax, 1 - ymin),
            7: (1 - xmax, 1 - ymax, 1 - xmin, 1 - ymin), 8: (1 - xmax, ymin, 1 - xmin, ymax)}[turn]


def open_image(data: bytes):
    """PIL image from bytes (lazy: only the header is read here).

    Pillow's decompression-bomb *warning* (above about 89 megapixels) is silenced: dataset images
    are decoded at a reduced scale where possible, and what cannot be decoded is rejected with its
    reason; beyond twice that size Pillow raises an error, which becomes such a reason.
    """
    import warnings

    from PIL import Image

    heif_available()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def perceptual_hash(image) -> str:
    """64-bit pHash as 16 hex characters, from a small grayscale copy (cheap and scale-robust).

    A box ``reduce`` to about 128 px first: converting and filtering the full-size picture would
    cost more than the rest of the hash (1.8 ms vs 0.8 ms at 800×600, same hashes within 2 bits).
    """
    import imagehash

    if image.mode in WIDE_MODES:
        image = to_eight_bit(image)
    factor = max(1, min(image.size) // HASH_DECODE_SIDE)
    small = (image.reduce(factor) if factor > 1 else image).convert("L")
    small.thumbnail((HASH_DECODE_SIDE, HASH_DECODE_SIDE))
    return str(imagehash.phash(small))


def check_bbox(bbox, width: int, height: int, tolerance: float):
    """Validate a 1-based inclusive box against the image; clip small overhangs.

    Returns ``(x1, y1, x2, y2)`` or a rejection reason string.
    """
    x1, y1, x2, y2 = (int(value) for value in bbox)
    if x1 >= x2 or y1 >= y2:
        return f"bad bbox: empty box ({x1}, {y1}, {x2}, {y2})"
    slack_x, slack_y = max(2, tolerance * width), max(2, tolerance * height)
    if x1 < 1 - slack_x or y1 < 1 - slack_y or x2 > width + slack_x or y2 > height + slack_y:
        return f"bbox outside image: ({x1}, {y1}, {x2}, {y2}) on a {width}x{height} image"
    return max(x1, 1), max(y1, 1), min(x2, width), min(y2, height)


def normalised_box(box, width: int, height: int) -> Tuple[float, float, float, float]:
    """1-based inclusive pixel box → normalised (ymin, xmin, ymax, xmax) in [0, 1]."""
    if box is None:
        return 0.0, 0.0, 1.0, 1.0
    x1, y1, x2, y2 = box
    return (y1 - 1) / height, (x1 - 1) / width, y2 / height, x2 / width


def crop_region(box, width: int, height: int, margin: float) -> Tuple[int, int, int, int]:
    """0-based (left, top, right, bottom) of the box grown by ``margin`` × its size, clipped."""
    x1, y1, x2, y2 = box
    grow_x, grow_y = margin * (x2 - x1 + 1), margin * (y2 - y1 + 1)
    left, top = max(0, int(x1 - 1 - grow_x)), max(0, int(y1 - 1 - grow_y))
    right, bottom = min(width, int(round(x2 + grow_x))), min(height, int(round(y2 + grow_y)))
    return left, top, right, bottom


def conversion_reason(image) -> Optional[str]:
    """Why an image cannot be kept as it is (``None`` for an RGB JPEG)."""
    if image.format not in PASSTHROUGH_FORMATS:
        return f"format {image.format or 'unknown'}"
    if image.mode != "RGB":
        return {"L": "grayscale", "CMYK": "CMYK"}.get(image.mode, f"mode {image.mode}")
    return None


def to_eight_bit(image):
    """A 16- or 32-bit grayscale image (PNG, TIFF; Pillow modes ``I;16``, ``I``, ``F``) as 8-bit ``L``.

    Values are scaled from the 16-bit range (a plain ``convert`` clips them at 255: a white picture);
    32-bit images whose values stay within 0…255 are taken as they are.
    """
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or values.max(initial=0.0) > 255:
        values = values * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")


def to_rgb(image):
    """RGB copy of any PIL mode: 16-bit pictures scaled to 8 bits, transparency composited on white.

    The one conversion used when building shards and when predicting (``eval.images``), so a photo
    looks the same to the model in training and in use.
    """
    from PIL import Image

    if image.mode in WIDE_MODES:
        image = to_eight_bit(image)
    if image.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def process(task: ImageTask, options: ImageOptions) -> Result:
    """Read and process one image; every failure becomes a :class:`Rejected` with its reason."""
    try:
        data = fs.read_bytes(task.path)
    except Exception as error:  # missing, permission, remote errors: the image is skipped
        return Rejected(f"unreadable file: {type(error).__name__}: {error}")
    if not data:
        return Rejected("empty file: 0 bytes")
    try:
        check_heif(task.path)
    except ValueError as error:
        return Rejected(f"unreadable format: {error}")
    try:
        return _process_bytes(data, task, options)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError… on damaged data
        return Rejected(f"undecodable image: {type(error).__name__}: {error}")


def _process_bytes(data: bytes, task: ImageTask, options: ImageOptions) -> Result:
    image = open_image(data)
    width, height = image.size
    box = None
    if task.bbox is not None and all(value is not None for value in task.bbox):
        box = check_bbox(task.bbox, width, height, options.bbox_tolerance)
        if isinstance(box, str):
            return Rejected(box)
    region = crop_region(box, width, height, options.crop_margin) if options.crop == "bbox" and box else None
    out_w, out_h = (region[2] - region[0], region[3] - region[1]) if region else (width, height)
    scale = min(1.0, options.max_side / max(out_w, out_h)) if options.max_side else 1.0
    reason, turn = conversion_reason(image), orientation(image)
    if reason is None and region is None and scale == 1.0 and turn == 1:
        return _passthrough(data, image, box, task.want_hash)
    return _reencode(image, box, region, scale, reason, task.want_hash, options, turn)


def _passthrough(data: bytes, image, box, want_hash: bool) -> Processed:
    width, height = image.size
    # Full entropy decode (catches damage) at the smallest DCT scale leaving enough pixels to hash.
    scale = min(1.0, max(1 / 8, HASH_DECODE_SIDE / max(width, height)))
    image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    image.load()
    return Processed(data, height, width, normalised_box(box, width, height),
                     perceptual_hash(image) if want_hash else None, None)


def _reencode(image, box, region, scale: float, reason, want_hash: bool, options: ImageOptions,
              turn: int = 1) -> Processed:
    """Decode, crop and resize in the stored pixel grid, then turn the result upright (``turn``: the
    EXIF orientation), its box with it."""
    from PIL import Image

    width, height = image.size
    if image.format in PASSTHROUGH_FORMATS:  # decode at the smallest DCT scale that is big enough
        image.draft(image.mode, (max(1, int(width * scale) + 1), max(1, int(height * scale) + 1)))
    image.load()
    factor = image.size[0] / width
    image = to_rgb(image)
    upright = image.transpose(TRANSPOSES[turn]) if turn != 1 else image
    phash = perceptual_hash(upright) if want_hash else None
    left, top, right, bottom = region or (0, 0, width, height)
    if region:
        image = image.crop(tuple(int(round(v * factor)) for v in region))
    target = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if turn != 1:
        image = image.transpose(TRANSPOSES[turn])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=options.jpeg_quality)
    if box is not None and region:
        x1, y1, x2, y2 = box
        box = (x1 - left, y1 - top, x2 - left, y2 - top)  # still 1-based inside the crop
    reasons = [part for part in (reason, "cropped" if region else None, "resized" if scale < 1.0 else None,
                                 TURNED if turn != 1 else None) if part]
    return Processed(buffer.getvalue(), image.size[1], image.size[0],
                     turned_box(normalised_box(box, right - left, bottom - top), turn), phash, ", ".join(reasons))


def process_batch(options: ImageOptions, tasks: List[ImageTask]) -> List[Result]:
    """Process several images (one inter-process message per batch, not per image)."""
    return [process(task, options) for task in tasks]


def hash_only(task: ImageTask) -> Result:
    """Decode (at a reduced DCT scale) and hash: the grouped split's pre-pass; failures are rejections."""
    result = process(dataclasses.replace(task, want_hash=True), ImageOptions(bbox_tolerance=float("inf")))
    if isinstance(result, Rejected):
        return result
    return Processed(b"", result.height, result.width, result.bbox, result.phash, None)


def hash_batch(tasks: List[ImageTask]) -> List[Result]:
    return [hash_only(task) for task in tasks]
