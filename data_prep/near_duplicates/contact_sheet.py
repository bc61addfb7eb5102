"""The files a build writes about near-duplicates: ``near_duplicates.csv``, ``label_conflicts.csv``
and the contact sheet ``label_conflicts.png`` (each conflicting pair side by side under both class
names).
"""
from __future__ import annotations

import io
from typing import Dict, Optional, Tuple

import pandas as pd

from common import fs
from data_prep.images import open_image, to_rgb

NEAR_DUPLICATES = "near_duplicates.csv"
LABEL_CONFLICTS = "label_conflicts.csv"
CONTACT_SHEET = "label_conflicts.png"
SHEET_PAIRS = 40  # pairs drawn on the contact sheet at most (all are in the CSV)



def write_reports(out: str, near: pd.DataFrame, conflicts: pd.DataFrame, paths: Dict[str, str]) -> None:
    """``near_duplicates.csv``, ``label_conflicts.csv`` and (when there are conflicts) the contact sheet."""
    fs.write_text_atomic(fs.join(out, NEAR_DUPLICATES), near.to_csv(index=False))
    fs.write_text_atomic(fs.join(out, LABEL_CONFLICTS), conflicts.to_csv(index=False))
    sheet = fs.join(out, CONTACT_SHEET)
    if len(conflicts):
        fs.write_bytes_atomic(sheet, contact_sheet(conflicts, paths))
    elif fs.exists(sheet):
        fs.remove(sheet)


def contact_sheet(conflicts: pd.DataFrame, paths: Dict[str, str], height: int = 150) -> bytes:
    """A PNG with each conflicting pair side by side, both class names under the pictures."""
    from PIL import Image, ImageDraw, ImageFont

    shown = conflicts.head(SHEET_PAIRS)
    font = ImageFont.load_default(size=13)
    cell_w, caption = 2 * height, 52
    sheet = Image.new("RGB", (2 * cell_w + 30, len(shown) * (height + caption + 12) + 30), "white")
    draw = ImageDraw.Draw(sheet)
    title = f"{len(conflicts)} label conflict(s): the same photo under two classes"
    if len(conflicts) > len(shown):
        title += f" (first {len(shown)}; all in {LABEL_CONFLICTS})"
    draw.text((10, 8), title, fill="black", font=font)
    for row, pair in enumerate(shown.itertuples(index=False)):
        top = 30 + row * (height + caption + 12)
        for column, (image_id, model) in enumerate(((pair.image_id_a, pair.model_a), (pair.image_id_b, pair.model_b))):
            left = 10 + column * (cell_w + 10)
            picture = _picture(paths.get(image_id), (cell_w, height))
            if picture is not None:
                sheet.paste(picture, (left, top))
            draw.text((left, top + height + 2), _fit(str(model), font, cell_w), fill=(160, 0, 0), font=font)
            draw.text((left, top + height + 18), _fit(str(image_id), font, cell_w), fill=(90, 90, 90), font=font)
        draw.text((10, top + height + caption - 2), f"pHash distance {pair.distance}, similarity {pair.similarity:.2f}",
                  fill=(90, 90, 90), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", compress_level=1)  # photos barely compress: optimize took 1.8 s of a 20-s build
    return buffer.getvalue()


def _fit(text: str, font, width: int) -> str:
    """``text`` cut from the left ("…" + its end) to fit ``width`` pixels: ids end with the file name."""
    if font.getlength(text) <= width:
        return text
    low, high = 1, len(text)  # the fewest characters to cut (binary search: a long id took 40 measurements)
    while low < high:
        middle = (low + high) // 2
        if font.getlength("…" + text[middle:]) <= width:
            high = middle
        else:
            low = middle + 1
    return "…" + text[low:]


def _picture(path: Optional[str], box: Tuple[int, int]):
    try:
        image = open_image(fs.read_bytes(path))
        image.draft("RGB", box)
        image = to_rgb(image)
    except Exception:  # the sheet still shows the names
        return None
    image.thumbnail(box)
    return image
