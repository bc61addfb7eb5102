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
  settled without the search, and the 256 fine crops are searched only for a partner that reaches
  ``COARSE_GATE`` on 16 coarse ones;
* the best correlation is the pair's ``similarity``; at or above ``SAME_PHOTO`` the pair is the
  same photo (possibly resized, recompressed, re-cropped a little or colour-shifted).

What one image contributes splits in two: a :class:`Signature` (layout and whole detail, 8 KB),
which its partners' crops are correlated with, and its own :class:`Crops`, computed once for all its
partners. The build (:func:`data_prep.near_duplicates.pairs.verify`) so reads every image in a candidate pair
at most twice, in worker processes, whatever the number of pairs.

``python -m benchmarks.bench_samephoto`` measured it on the real Stanford Cars photos (docs/data.md,
"Near-duplicates"): copies score 0.78–1.00 (97% of them), the real photos filed twice 0.83–1.00, the look-alike
studio shots of different cars at most 0.58. On the synthetic pictures different cars drawn in
the same pose reach 0.76, hence the threshold of 0.78.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from scipy.ndimage import uniform_filter

from common import fs
from data_prep.images import WIDE_MODES, open_image, to_eight_bit

SIDE = 32  # compared thumbnail
SOURCE_SIDE = 96  # the thumbnail crops are resampled from
MAX_CROP = 0.075  # of the width (height) cut from each side at most
CROP_STEPS = 4  # 0, 2.5, 5, 7.5 % (3 steps lost most 2%-cropped copies: measured)
SAME_PHOTO = 0.78
BLUR = 5  # pixels of the thumbnail: detail finer than this is compared
PREFILTER = 0.4  # whole-picture correlation below which no crop is searched
COARSE_GATE = 0.4  # best coarse-crop correlation below which the fine crops are not searched


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
        image.draft("RGB", (SOURCE_SIDE, SOURCE_SIDE))
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


def _crop_matrices(cuts: np.ndarray) -> np.ndarray:
    starts, ends = np.meshgrid(cuts, 1 - cuts, indexing="ij")
    return _interpolation(starts.ravel(), ends.ravel())


class _CropGrid:
    """Interpolation matrices for every (first cut, last cut) of one axis, ``(cuts², SIDE, SOURCE_SIDE)``,
    their transposes, and the weights that give a crop's mean from the source (``(cuts², SOURCE_SIDE)``)."""

    def __init__(self, cuts: np.ndarray):
        self.matrices = _crop_matrices(cuts)
        self.transposed = np.ascontiguousarray(self.matrices.transpose(0, 2, 1))
        self.means = self.matrices.mean(axis=1)


FINE = _CropGrid(np.linspace(0, MAX_CROP, CROP_STEPS))  # 0, 2.5, 5, 7.5 % per side: 256 crops
COARSE = _CropGrid(np.array([MAX_CROP / 6, MAX_CROP * 5 / 6]))  # 1.25, 6.25 %: 16 crops, none far from a fine one
WHOLE = FINE.matrices[0]  # no cut on either side


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


def _whole(image: np.ndarray) -> np.ndarray:
    return WHOLE @ image @ WHOLE.T


@dataclasses.dataclass
class Signature:
    """What the comparison needs of one image without its crops: the normalised layout (whole
    thumbnail, for the prefilter) and the normalised whole detail (what the other image's crops are
    correlated with), each ``(2, SIDE, SIDE)``; kept as float16 (8 KB an image)."""

    layout: np.ndarray
    whole: np.ndarray


def signature(image: np.ndarray) -> Signature:
    return Signature(_normalised(_whole(image)).astype(np.float16),
                     _normalised(_whole(detail(image))).astype(np.float16))


def _crop_correlations(picture: np.ndarray, grid: _CropGrid, targets: np.ndarray) -> np.ndarray:
    """The best correlation of each target (rows of ``targets``, ``(n, 2 × SIDE²)``, normalised) with
    a crop of ``picture`` (a detail, ``(2, SOURCE_SIDE, SOURCE_SIDE)``) on ``grid``.

    The crops are not normalised one by one: a target has zero mean in each channel, so a crop's
    mean does not change its dot product with it, and the norm of each centred crop comes from its
    sum of squares and its mean (the mean itself from the grid's weights, without the pixels)."""
    count = len(grid.matrices)
    rows = np.matmul(grid.matrices[:, None], picture[None])  # (K, 2, SIDE, SOURCE_SIDE): rows cropped
    crops = np.matmul(rows[:, None], grid.transposed[None, :, None]).reshape(count * count, -1)  # (K², 2 × SIDE²)
    means = grid.means @ picture @ grid.means.T  # (2, K, K)
    squares = np.einsum("pq,pq->p", crops, crops)
    norm = np.sqrt(np.maximum(squares - SIDE * SIDE * (means * means).sum(axis=0).ravel(), 0.0))
    inverse_norm = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 1e-6)
    return ((crops @ targets.T) * inverse_norm[:, None]).max(axis=0)


class Crops:
    """The slight crops of one image's detail, correlated with the whole detail of any number of
    other images: first the 16 coarse crops, then — only for the targets that reach ``COARSE_GATE``
    there — all 256 fine ones (measured on the real photos: no copy found by the fine search is
    below 0.52 on the coarse grid; most pHash candidates of different photos are)."""

    def __init__(self, image: np.ndarray):
        self.picture = detail(image)

    def best(self, wholes: np.ndarray) -> np.ndarray:
        """The best correlation of each of ``wholes`` (``(n, 2, SIDE, SIDE)``, normalised) with a crop."""
        targets = np.asarray(wholes, dtype=np.float32).reshape(len(wholes), -1)
        values = _crop_correlations(self.picture, COARSE, targets)
        close = values >= COARSE_GATE
        if close.any():
            values[close] = _crop_correlations(self.picture, FINE, targets[close])
        return values


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """The pair's best correlation over slight crops of either image, in [-1, 1]."""
    return float(similarities(np.array([[0, 1]]), {0: first, 1: second})[0])


def layout_correlation(first: Signature, second: Signature) -> float:
    return float(np.dot(first.layout.ravel().astype(np.float32), second.layout.ravel().astype(np.float32)))


def similarities(pairs: np.ndarray, thumbnails: Dict[int, np.ndarray]) -> np.ndarray:
    """``similarity`` for each ``(i, j)`` row of ``pairs`` (NaN where a thumbnail is missing).

    A pair whose whole pictures correlate below ``PREFILTER`` is settled without the crop search
    (no copy measured came near it): most pHash candidates on real photos are. Each image's crops
    are computed once, for all the pairs it is in (either side)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    signatures = {key: signature(image) for key, image in thumbnails.items()}
    values, search = prefilter(pairs, signatures)
    for key, rows, partners_of_rows in partners(pairs, search):
        search_with(Crops(thumbnails[key]), rows, partners_of_rows, signatures, values)
    return values


def prefilter(pairs: np.ndarray, signatures: Dict[int, Signature]):
    """``(values, search)``: the layout correlation of each pair (NaN where a signature is missing)
    and the rows whose crops must be searched. ``values`` is raised in place by :func:`search_with`."""
    values = np.full(len(pairs), np.nan)
    for row, (first, second) in enumerate(pairs):
        if int(first) in signatures and int(second) in signatures:
            values[row] = layout_correlation(signatures[int(first)], signatures[int(second)])
    search = np.flatnonzero(values >= PREFILTER)
    values[search] = -1.0
    return values, search


def partners(pairs: np.ndarray, search: np.ndarray) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """``(image, rows, partners)`` for every image in the rows ``search`` of ``pairs`` (in increasing
    order): the rows it is in, on either side, and its partner in each (one sort, not a scan per image)."""
    rows = np.concatenate([search, search])
    keys = np.concatenate([pairs[search, 0], pairs[search, 1]])
    others = np.concatenate([pairs[search, 1], pairs[search, 0]])
    order = np.argsort(keys, kind="stable")
    keys, rows, others = keys[order], rows[order], others[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    for start, end in zip(starts, np.r_[starts[1:], len(keys)]):
        yield int(keys[start]), rows[start:end], others[start:end]


def wholes_of(partners_of_rows: np.ndarray, signatures: Dict[int, Signature]) -> np.ndarray:
    """The whole details of these partners, ``(n, 2, SIDE, SIDE)``: what one image's crops meet."""
    return np.stack([signatures[int(partner)].whole for partner in partners_of_rows])


def search_with(crops: Crops, rows: np.ndarray, partners_of_rows: np.ndarray, signatures: Dict[int, Signature],
                values: np.ndarray) -> None:
    """The crops of one image against the whole detail of its partner in each of ``rows``; each row
    keeps its best correlation."""
    values[rows] = np.maximum(values[rows], crops.best(wholes_of(partners_of_rows, signatures)))


# --- on files, in worker processes (this module imports no TensorFlow: cheap to start) ------------

def _file_thumbnail(path: str) -> Optional[np.ndarray]:
    try:
        return thumbnail_of_bytes(fs.read_bytes(path))
    except Exception:  # unreadable now (it was hashed before): its pairs stay unverified
        return None


def signatures_of_files(paths: List[str]) -> List[Optional[Signature]]:
    return [None if picture is None else signature(picture) for picture in map(_file_thumbnail, paths)]


def best_of_files(items: List[Tuple[str, np.ndarray]]) -> List[Optional[np.ndarray]]:
    """For each ``(path, partner wholes)``: the best correlation of each partner with a crop of the
    image at ``path`` (``None`` where it cannot be read)."""
    results = []
    for path, wholes in items:
        picture = _file_thumbnail(path)
        results.append(None if picture is None else Crops(picture).best(wholes))
    return results


def same_photo(value: float, threshold: float = SAME_PHOTO) -> bool:
    return value >= threshold
