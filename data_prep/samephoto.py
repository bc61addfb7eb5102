"""Is a near-duplicate candidate the same photo? The verification stage after the 64-bit pHash.

pHash finds candidates cheaply, but on real photos it also pairs *different* cars shot in the same
pose on a white background (a BMW M3 and an M5 side by side in a catalogue: distance 4), while a
copy cropped by a few percent can be 10 bits away. So every candidate pair is looked at again:

* each image becomes a small two-channel thumbnail, ``SOURCE_SIDE`` pixels square whatever its
  aspect ratio: green, and the mean of red and blue (both unchanged when a re-upload swaps red and
  blue, as some Stanford Cars files are);
* only the detail is compared — the thumbnail minus its blur: look-alikes share the layout (white
  background, the same pose), copies share the detail. Plain thumbnails could not tell them apart
  (look-alikes correlate at 0.82–0.85 there, copies cropped by 3% at 0.71);
* one image (``SIDE`` px) is compared with every slight crop of the other (each side cut by 0 …
  ``MAX_CROP``, in ``CROP_STEPS`` steps; both directions) by normalised cross-correlation, which
  ignores brightness and contrast; a pair whose whole pictures correlate below ``PREFILTER`` is
  settled without the search;
* the best correlation is the pair's ``similarity``; at or above ``SAME_PHOTO`` the pair is the
  same photo (possibly resized, recompressed, re-cropped a little or colour-shifted).

``python -m benchmarks.bench_samephoto`` measured it on the real Stanford Cars photos (README,
"Near-duplicates"): copies score 0.78–1.00 (97% of them), the real photos filed twice 0.84–1.00, the look-alike
studio shots of different cars at most 0.58. On the synthetic pictures different cars drawn in
the same pose reach 0.76, hence the threshold of 0.78.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from scipy.ndimage import uniform_filter

from data_prep.images import WIDE_MODES, open_image, to_eight_bit

SIDE = 32  # compared thumbnail
SOURCE_SIDE = 96  # the thumbnail crops are resampled from
MAX_CROP = 0.075  # of the width (height) cut from each side at most
CROP_STEPS = 4  # 0, 2.5, 5, 7.5 % (3 steps lost most 2%-cropped copies: measured)
SAME_PHOTO = 0.78
BLUR = 5  # pixels of the thumbnail: detail finer than this is compared
PREFILTER = 0.4  # whole-picture correlation below which no crop is searched


def thumbnail(image) -> np.ndarray:
    """``(2, SOURCE_SIDE, SOURCE_SIDE)`` float32 of a PIL image: its green channel and the mean of red
    and blue — the colour that a red/blue swap leaves unchanged."""
    from PIL import Image

    image = image.convert("RGB")
    resample = Image.Resampling.BOX if min(image.size) >= SOURCE_SIDE else Image.Resampling.BILINEAR
    pixels = np.asarray(image.resize((SOURCE_SIDE, SOURCE_SIDE), resample), dtype=np.float32)
    return np.stack([pixels[..., 1], (pixels[..., 0] + pixels[..., 2]) / 2])


def thumbnail_of_bytes(data: bytes) -> np.ndarray:
    """The thumbnail of an encoded image, decoded at the smallest sufficient JPEG scale."""
    image = open_image(data)
    if image.format == "JPEG":
        image.draft("RGB", (2 * SOURCE_SIDE, 2 * SOURCE_SIDE))
    image.load()
    if image.mode in WIDE_MODES:
        image = to_eight_bit(image)
    return thumbnail(image)


def _interpolation(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Linear-interpolation matrices ``(len(starts), SIDE, SOURCE_SIDE)`` sampling ``SIDE`` points
    between each ``start`` and ``end`` (fractions of the source)."""
    centres = (np.arange(SIDE) + 0.5) / SIDE
    positions = (starts[:, None] + (ends - starts)[:, None] * centres[None, :]) * SOURCE_SIDE - 0.5
    positions = np.clip(positions, 0, SOURCE_SIDE - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, SOURCE_SIDE - 1)
    weight = positions - low
    matrix = np.zeros((len(starts), SIDE, SOURCE_SIDE), dtype=np.float32)
    rows = np.arange(len(starts))[:, None]
    columns = np.arange(SIDE)[None, :]
    np.add.at(matrix, (rows, columns, low), 1 - weight)
    np.add.at(matrix, (rows, columns, high), weight)
    return matrix


def _crop_matrices() -> np.ndarray:
    cuts = np.linspace(0, MAX_CROP, CROP_STEPS)
    starts, ends = np.meshgrid(cuts, 1 - cuts, indexing="ij")
    return _interpolation(starts.ravel(), ends.ravel())


CROPS = _crop_matrices()  # (CROP_STEPS², SIDE, SOURCE_SIDE): every (first cut, last cut) of one axis
FLAT_CROPS = CROPS.reshape(-1, SOURCE_SIDE)


def _normalised(values: np.ndarray) -> np.ndarray:
    """Each channel at zero mean, then unit norm over the last three axes (channels and pixels
    together, so that a flat channel adds nothing; a flat picture stays zero)."""
    values = values - values.mean(axis=(-2, -1), keepdims=True)
    norm = np.sqrt((values * values).sum(axis=(-3, -2, -1), keepdims=True))
    return np.divide(values, norm, out=np.zeros_like(values), where=norm > 1e-6)


def detail(image: np.ndarray) -> np.ndarray:
    """The thumbnail minus its blur: what copies share and look-alikes do not (their layout — white
    background, the same pose — is the blur)."""
    return image - uniform_filter(image, size=BLUR * SOURCE_SIDE // SIDE, axes=(-2, -1), mode="nearest")


def _crops(image: np.ndarray) -> np.ndarray:
    """Every slight crop of ``image``'s detail, normalised: ``(CROP_STEPS⁴, channels × SIDE²)``."""
    count = len(CROPS)
    crops = np.stack([((CROPS @ channel).reshape(count * SIDE, SOURCE_SIDE) @ FLAT_CROPS.T)
                      .reshape(count, SIDE, count, SIDE).transpose(0, 2, 1, 3) for channel in detail(image)], axis=2)
    return _normalised(crops).reshape(count * count, -1)


def _whole(image: np.ndarray) -> np.ndarray:
    return CROPS[0] @ image @ CROPS[0].T


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """The pair's best correlation over slight crops of either image, in [-1, 1]."""
    return float(similarities(np.array([[0, 1]]), {0: first, 1: second})[0])


def _one_way(pairs: np.ndarray, thumbnails: Dict[int, np.ndarray], wholes: Dict[int, np.ndarray]) -> np.ndarray:
    """For each ``(i, j)``: the best correlation of ``j`` (whole) with a crop of ``i``; the crops of
    each ``i`` are computed once for all its partners."""
    best = np.full(len(pairs), -1.0)
    order = np.argsort(pairs[:, 0], kind="stable")
    for source in np.unique(pairs[:, 0]):
        rows = order[pairs[order, 0] == source]
        targets = np.stack([wholes[int(j)] for j in pairs[rows, 1]])
        best[rows] = (_crops(thumbnails[int(source)]) @ targets.T).max(axis=0)
    return best


def similarities(pairs: np.ndarray, thumbnails: Dict[int, np.ndarray]) -> np.ndarray:
    """``similarity`` for each ``(i, j)`` row of ``pairs`` (NaN where a thumbnail is missing).

    A pair whose whole pictures correlate below ``PREFILTER`` is settled without the crop search
    (no copy measured came near it): most pHash candidates on real photos are."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    values = np.full(len(pairs), np.nan)
    present = np.array([int(a) in thumbnails and int(b) in thumbnails for a, b in pairs], dtype=bool)
    if not present.any():
        return values
    layouts = {key: _normalised(_whole(image)).ravel() for key, image in thumbnails.items()}
    wholes = {key: _normalised(_whole(detail(image))).ravel() for key, image in thumbnails.items()}
    rows = np.flatnonzero(present)
    layout = np.array([layouts[int(a)] @ layouts[int(b)] for a, b in pairs[rows]])
    values[rows] = layout
    search = rows[layout >= PREFILTER]
    if len(search):
        forward = _one_way(pairs[search], thumbnails, wholes)
        backward = _one_way(pairs[search][:, ::-1], thumbnails, wholes)
        values[search] = np.maximum(forward, backward)
    return values


def same_photo(value: float, threshold: float = SAME_PHOTO) -> bool:
    return value >= threshold
