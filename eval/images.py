"""Photos from users for ``eval.predict``: find them, read them, and say clearly what is wrong.

A JPEG is decoded at the coarsest DCT scale that keeps at least the model's size on the short side,
as the training pipeline decodes (and several times faster for camera-sized photos). Unlike the
dataset images, a user's photo is turned upright from its EXIF orientation (phones store most
photos rotated).
"""
from __future__ import annotations

import dataclasses
import io
from typing import List, Sequence, Tuple

import numpy as np

from common import fs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Problem:
    path: str
    reason: str


def image_files(inputs: Sequence[str]) -> Tuple[List[str], List[Problem]]:
    """Files named, and image files found below named folders (sorted); problems for the rest."""
    files, problems = [], []
    for item in inputs:
        if fs.isdir(item):
            found = [fs.join(item, name) for name in fs.walk_files(item) if name.lower().endswith(IMAGE_SUFFIXES)]
            if not found:
                problems.append(Problem(item, f"folder without images (looked for {', '.join(IMAGE_SUFFIXES)})"))
            files += found
        elif fs.exists(item):
            files.append(item)
        else:
            problems.append(Problem(item, "no such file or folder"))
    return files, problems


def load_image(path: str, size: int) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``, upright; raises ``ValueError`` with a readable reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        data = fs.read_bytes(path)
    except OSError as error:
        raise ValueError(f"cannot read the file ({error.strerror or error})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("not an image (expected JPEG, PNG, BMP, GIF, WebP or TIFF)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"damaged or unsupported image ({error})") from None
