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


def png_16bit(values: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by the last axis) written byte by byte, as cameras
    and scanners write them (Pillow itself can only write 16-bit grayscale)."""
    import struct
    import zlib

    values = values if values.ndim == 3 else values[..., None]
    height, width, channels = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def two_halves(kind):
    """(PNG bytes, expected 8-bit RGB of the left half, of the right half)."""
    if kind == "gray16":  # 16-bit grayscale: Pillow opens it as mode I;16 (a plain convert gives white)
        values = np.full((40, 60), 16384, np.uint16)
        values[:, 30:] = 49152
        return png_16bit(values), (64, 64, 64), (191, 191, 191)
    if kind == "rgb16":
        values = np.zeros((40, 60, 3), np.uint16)
        values[:, :30] = (65535, 32896, 0)
        values[:, 30:] = (0, 0, 65535)
        return png_16bit(values), (255, 128, 0), (0, 0, 255)
    # transparent left half (black under the alpha), opaque red right half: composited on white
    values = np.zeros((40, 60, 4), np.uint8)
    values[:, 30:] = (200, 30, 30, 255)
    buffer = io.BytesIO()
    Image.fromarray(values, "RGBA").save(buffer, "PNG")
    return buffer.getvalue(), (255, 255, 255), (200, 30, 30)


@pytest.mark.parametrize("kind", ["gray16", "rgb16", "transparent"])
def test_16_bit_and_transparent_pngs_decode_alike_when_building_and_predicting(tmp_path, kind):
    from eval.images import load_image

    data, left, right = two_halves(kind)
    path = tmp_path / "car.png"
    path.write_bytes(data)
    built = process(ImageTask(str(path), None), ImageOptions())
    assert isinstance(built, Processed), built
    stored = np.asarray(Image.open(io.BytesIO(built.encoded)).convert("RGB"), dtype=float)
    shown = load_image(str(path), 32).astype(float)
    for pixels, tolerance in ((stored, 3), (shown, 1)):  # the build re-encodes as JPEG
        assert np.abs(pixels[:, 5:25] - left).max() <= tolerance, (kind, pixels[0, 0])
        assert np.abs(pixels[:, 35:55] - right).max() <= tolerance, (kind, pixels[0, 40])
