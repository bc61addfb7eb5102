"""Photos from users for ``eval.predict``: find them, read them, and say clearly what is wrong.

A JPEG is decoded at the coarsest DCT scale that keeps at least the model's size on the short side,
as the training pipeline decodes (and several times faster for camera-sized photos). A photo is
turned upright from its EXIF orientation (phones store most photos rotated), as the build turns the
dataset's photos; the formats are the build's (``data_prep.images.PHOTO_SUFFIXES``), HEIC included.
"""
from __future__ import annotations

import dataclasses
import io
from typing import List, Sequence, Tuple

import numpy as np

from common import fs
from data_prep.images import (PHOTO_SUFFIXES, TRANSPOSES, check_heif, heif_available, is_photo_name, not_a_photo,
                              orientation, to_rgb)


@dataclasses.dataclass(frozen=True)
class Problem:
    path: str
    reason: str


def image_files(inputs: Sequence[str]) -> Tuple[List[str], List[Problem]]:
    """Files named, and image files found below named folders (sorted); problems for the rest."""
    files, problems = [], []
    for item in inputs:
        if fs.isdir(item):
            names = list(fs.walk_files(item))
            found = [fs.join(item, name) for name in names if is_photo_name(name)]
            misnamed = [Problem(fs.printable_name(fs.join(item, name)), not_a_photo(name))
                        for name in names if fs.undecodable(name)]
            if not found and not misnamed:
                problems.append(Problem(item, f"folder without images (looked for {', '.join(PHOTO_SUFFIXES)})"))
            files, problems = files + found, problems + misnamed
        elif fs.exists(item) and fs.undecodable(item):
            problems.append(Problem(fs.printable_name(item), not_a_photo(item)))
        elif fs.exists(item):
            files.append(item)
        else:
            problems.append(Problem(item, "no such file or folder"))
    return files, problems


def fitted(image, side: int, turn=None):
    """``image`` as RGB, downscaled to at most ``side`` on its longer side, then turned upright."""
    from PIL import Image

    if image.mode not in RESIZABLE_MODES:  # palette, 16-bit, CMYK: no filtered resize in their own mode
        image = to_rgb(image)
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    image = to_rgb(image)
    return image.transpose(turn) if turn is not None else image


class TooLarge(ValueError):
    """A picture that would decode to more pixels than allowed."""


MAX_MEGAPIXELS = 100.0  # pixels decoded per photo (after a JPEG's reduced-scale decode), in millions
FIT_FACTOR = 2  # photos are downscaled to at most FIT_FACTOR × the model's input size before any float
RESIZABLE_MODES = ("RGB", "RGBA", "L", "LA")  # Pillow's filtered resize; other modes are made RGB first


def decoded_megapixels(path: str, size: int) -> float:
    """What decoding ``path`` for a model of input ``size`` costs, read from its header (a JPEG at the
    reduced DCT scale it will be decoded at); 0 when it is not a readable picture."""
    from PIL import Image

    import warnings

    heif_available()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a header only; limits apply later
            image = Image.open(path)
        with image:
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            return image.size[0] * image.size[1] / 1e6
    except Exception:  # whatever it is, load_image names the problem
        return 0.0


def load_image(path: str, size: int, max_megapixels: float = MAX_MEGAPIXELS) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``, upright, at most ``FIT_FACTOR × size`` on its longer side; raises
    ``ValueError`` with a readable reason.

    A JPEG is decoded at the coarsest DCT scale that keeps ``size`` pixels; a picture that would
    still decode to more than ``max_megapixels`` (a 13000 × 13000 PNG is 169) is refused from its
    header, before any memory is spent on it. Every picture is then downscaled (Lanczos, like the
    build's ``--max-side``) before it becomes RGB and before any float: a 40-megapixel PNG costs its
    decoded bytes once, not a float32 copy of them (the model resizes the small picture).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        data = fs.read_bytes(path)
    except OSError as error:
        raise ValueError(f"cannot read the file ({error.strerror or error})") from None
    check_heif(path)
    heif_available()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            width, height = image.size
            if width * height > max_megapixels * 1e6:
                raise TooLarge(f"too large to decode: {width} × {height} pixels ({width * height / 1e6:.0f} "
                                 f"megapixels; the limit is {max_megapixels:g})")
            turn = TRANSPOSES.get(orientation(image))
            return np.asarray(fitted(image, FIT_FACTOR * size, turn), dtype=np.uint8)
    except Image.DecompressionBombError as error:
        raise ValueError(f"too large to decode ({error})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (expected a photo: JPEG, PNG, HEIC, WebP, GIF, BMP, TIFF, …)") from None
    except TooLarge:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"damaged or unsupported image ({error})") from None
