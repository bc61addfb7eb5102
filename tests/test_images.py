"""Per-image processing: passthrough, conversions, rejections, resize, crop and box arithmetic."""
import io

import numpy as np
import pytest
from PIL import Image

from data_prep.images import (ImageOptions, ImageTask, Processed, Rejected, check_bbox, crop_region,
                              normalised_box, process)


def write(path, image, fmt="JPEG", **kwargs):
    image.save(path, fmt, **kwargs)
    return str(path)


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)
    pixels[100:200, 100:300] = (200, 30, 30)
    return Image.fromarray(pixels)


def decoded(result):
    image = Image.open(io.BytesIO(result.encoded))
    return image.format, image.mode, image.size


def test_rgb_jpeg_bytes_are_kept_as_they_are(tmp_path, photo):
    path = write(tmp_path / "a.jpg", photo, quality=90)
    result = process(ImageTask(path, (101, 101, 300, 200)), ImageOptions())
    assert isinstance(result, Processed) and result.converted is None
    assert result.encoded == open(path, "rb").read()
    assert (result.height, result.width) == (300, 400)
    assert result.bbox == pytest.approx((100 / 300, 100 / 400, 200 / 300, 300 / 400))
    assert len(result.phash) == 16


@pytest.mark.parametrize("kind, expected", [("grayscale", "grayscale"), ("cmyk", "CMYK"), ("png", "format PNG"),
                                            ("rgba_png", "format PNG")])
def test_decodable_oddities_become_rgb_jpeg(tmp_path, photo, kind, expected):
    image, fmt = {"grayscale": (photo.convert("L"), "JPEG"), "cmyk": (photo.convert("CMYK"), "JPEG"),
                  "png": (photo, "PNG"), "rgba_png": (photo.convert("RGBA"), "PNG")}[kind]
    path = write(tmp_path / "named.jpg", image, fmt)  # PNG named .jpg included
    result = process(ImageTask(path, None), ImageOptions())
    assert result.converted == expected
    assert decoded(result) == ("JPEG", "RGB", (400, 300))


@pytest.mark.parametrize("damage, reason", [("zero", "empty file"), ("truncated", "undecodable image"),
                                            ("garbage", "undecodable image"), ("absent", "unreadable file")])
def test_undecodable_files_are_rejected_with_a_reason(tmp_path, photo, damage, reason):
    path = tmp_path / "bad.jpg"
    data = io.BytesIO()
    photo.save(data, "JPEG")
    payload = {"zero": b"", "truncated": data.getvalue()[: len(data.getvalue()) // 2],
               "garbage": b"not an image at all", "absent": None}[damage]
    if payload is not None:
        path.write_bytes(payload)
    result = process(ImageTask(str(path), None), ImageOptions())
    assert isinstance(result, Rejected) and result.reason.startswith(reason)


def test_max_side_downscales_once_and_keeps_the_aspect(tmp_path, photo):
    path = write(tmp_path / "a.jpg", photo)
    result = process(ImageTask(path, (101, 101, 300, 200)), ImageOptions(max_side=100))
    assert (result.width, result.height) == (100, 75) and decoded(result)[2] == (100, 75)
    assert result.converted == "resized"
    assert result.bbox == pytest.approx((100 / 300, 100 / 400, 200 / 300, 300 / 400))  # normalised: unchanged
    small = process(ImageTask(path, None), ImageOptions(max_side=1000))
    assert small.converted is None  # never upscaled, bytes kept


def test_crop_to_box_with_margin(tmp_path, photo):
    path = write(tmp_path / "a.jpg", photo)
    result = process(ImageTask(path, (101, 101, 300, 200)), ImageOptions(crop="bbox", crop_margin=0.1))
    # box 200×100 px grown by 20×10 px per side: columns 80..320, rows 90..210
    assert (result.width, result.height) == (240, 120)
    assert result.bbox == pytest.approx((10 / 120, 20 / 240, 110 / 120, 220 / 240))
    image = np.asarray(Image.open(io.BytesIO(result.encoded)))
    assert abs(int(image[60, 120, 0]) - 200) < 30 and int(image[60, 120, 1]) < 70  # the red block is inside


def test_box_checks():
    assert check_bbox((1, 1, 400, 300), 400, 300, 0.02) == (1, 1, 400, 300)
    assert check_bbox((0, 1, 405, 301), 400, 300, 0.02) == (1, 1, 400, 300)  # small overhang clipped
    assert check_bbox((10, 10, 900, 50), 400, 300, 0.02).startswith("bbox outside image")
    assert check_bbox((50, 10, 50, 40), 400, 300, 0.02).startswith("bad bbox: empty box")
    assert normalised_box((1, 1, 400, 300), 400, 300) == (0.0, 0.0, 1.0, 1.0)
    assert normalised_box(None, 10, 10) == (0.0, 0.0, 1.0, 1.0)
    assert crop_region((101, 101, 300, 200), 400, 300, 0.0) == (100, 100, 300, 200)


def test_box_outside_the_image_rejects_the_image(tmp_path, photo):
    path = write(tmp_path / "a.jpg", photo)
    result = process(ImageTask(path, (10, 10, 900, 50)), ImageOptions())
    assert isinstance(result, Rejected) and "outside" in result.reason
