"""Procedural car pictures whose labels are visible.

* make → colour scheme (body hue) and silhouette family (straight, rounded or raked roof);
* model → details: number of side windows, wheel size and rim style, headlight shape, accent stripe;
* year → a subtle change: bumper tone and tail-light size;
* type → body shape (sedan, SUV, coupe, convertible, hatchback, wagon, minivan, pickup, van);
* viewpoint → side view facing either way, three-quarter (compressed, with a front or rear face),
  or a frontal / rear view.

Backgrounds, sizes, positions and lighting vary per image. Returns the image and the car's box
in 1-based pixel coordinates, like the real annotations.
"""
from __future__ import annotations

import colorsys
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from data_prep.synthetic.catalog import CarClass

# cabin outline (x along the car 0..1 from rear to front, y up in car-length units) and body top
SHAPES = {
    "sedan": (0.20, [(0.20, 0.20), (0.32, 0.33), (0.64, 0.33), (0.80, 0.20)]),
    "coupe": (0.18, [(0.28, 0.18), (0.42, 0.29), (0.60, 0.29), (0.80, 0.18)]),
    "hatchback": (0.21, [(0.06, 0.21), (0.14, 0.34), (0.62, 0.34), (0.80, 0.21)]),
    "wagon": (0.21, [(0.02, 0.21), (0.06, 0.34), (0.64, 0.34), (0.80, 0.21)]),
    "suv": (0.25, [(0.04, 0.25), (0.08, 0.42), (0.70, 0.42), (0.84, 0.25)]),
    "minivan": (0.24, [(0.02, 0.24), (0.05, 0.43), (0.76, 0.43), (0.92, 0.24)]),
    "van": (0.26, [(0.01, 0.26), (0.01, 0.50), (0.86, 0.50), (0.97, 0.26)]),
    "pickup": (0.24, [(0.46, 0.24), (0.50, 0.40), (0.74, 0.40), (0.84, 0.24)]),
    "convertible": (0.18, [(0.58, 0.18), (0.66, 0.27), (0.68, 0.27), (0.62, 0.18)]),
}
WHEEL_Y = 0.07
ACCENTS = [(250, 250, 250), (20, 20, 20), (240, 200, 30), (30, 160, 240), (230, 60, 40), (40, 200, 90)]
BUMPERS = [(200, 200, 205), (40, 40, 40), (150, 110, 60), (90, 90, 120), (225, 225, 180)]


def hsv(h: float, s: float, v: float) -> Tuple[int, int, int]:
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_colours(car: CarClass, rng) -> Tuple[tuple, tuple]:
    hue = (car.make_index * 0.61803) % 1.0
    body = hsv(hue + rng.normal(0, 0.01), 0.75, float(np.clip(0.8 + rng.normal(0, 0.06), 0.5, 1.0)))
    trim = hsv(hue + 0.5, 0.6, 0.35)
    return body, trim


def background(width: int, height: int, rng) -> Tuple[Image.Image, int]:
    """Sky, ground and a few random buildings/trees; returns the image and the horizon row."""
    sky = hsv(rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.5), rng.uniform(0.7, 1.0))
    ground = hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.4), rng.uniform(0.25, 0.6))
    horizon = int(height * rng.uniform(0.45, 0.65))
    image = Image.new("RGB", (width, height), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, horizon, width, height], fill=ground)
    for _ in range(int(rng.integers(0, 5))):
        x, w, h = rng.uniform(0, width), rng.uniform(0.05, 0.25) * width, rng.uniform(0.1, 0.4) * height
        colour = hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.3, 0.9))
        if rng.random() < 0.5:
            draw.rectangle([x, horizon - h, x + w, horizon], fill=colour)
        else:
            draw.ellipse([x, horizon - h, x + w, horizon + 0.1 * h], fill=colour)
    return image, horizon


def family_roof(points: List[tuple], family: int) -> List[tuple]:
    """Silhouette family of the make: straight, rounded (extra points) or raked (roof moved back)."""
    (rx0, y0), (rx1, ry), (fx1, _), (fx0, _) = points
    if family == 1:
        return [(rx0, y0), (rx1 - 0.02, ry - 0.03), (rx1 + 0.03, ry), (fx1 - 0.03, ry), (fx1 + 0.02, ry - 0.03),
                (fx0, y0)]
    if family == 2:
        return [(rx0, y0), (rx1 - 0.03, ry), (fx1 - 0.06, ry), (fx0, y0)]
    return points


def side_view(draw, car: CarClass, rng, box, facing_right: bool, face: str):
    """Draw the side (or three-quarter) view inside ``box`` = (left, ground, length)."""
    left, ground, length = box
    body_top, cabin = SHAPES[car.shape]

    def at(x, y):
        x = x if facing_right else 1 - x
        return left + x * length, ground - y * length

    body, trim = make_colours(car, rng)
    draw.rounded_rectangle(_rect(at(0, 0.05), at(1, body_top)), radius=max(1, int(0.03 * length)), fill=body)
    roof = [at(x, y) for x, y in family_roof(cabin, car.make_index % 3)]
    draw.polygon(roof, fill=body if car.shape != "convertible" else trim)
    if car.shape != "convertible":
        _windows(draw, cabin, car.model_index % 3 + 1, at)
    if car.shape == "pickup":
        draw.rectangle(_rect(at(0.02, body_top), at(0.44, body_top + 0.04)), outline=trim, width=2)
    accent = ACCENTS[car.model_index % len(ACCENTS)]
    draw.rectangle(_rect(at(0.03, body_top * 0.55), at(0.97, body_top * 0.55 + 0.02)), fill=accent)
    bumper = BUMPERS[car.year_index % len(BUMPERS)]
    draw.rectangle(_rect(at(-0.01, 0.05), at(0.05, 0.10)), fill=bumper)
    draw.rectangle(_rect(at(0.95, 0.05), at(1.01, 0.10)), fill=bumper)
    _lights(draw, car, at, body_top)
    radius = (0.075 + 0.012 * (car.model_index % 3)) * length
    for x in (0.18, 0.82):
        _wheel(draw, at(x, WHEEL_Y), radius, car.model_index % 4)
    if face:
        x = 1.0 if face == "front" else 0.0
        colour = (255, 240, 170) if face == "front" else (220, 30, 30)
        draw.rectangle(_rect(at(x - 0.02, 0.12), at(x + 0.01, 0.17)), fill=colour)
    top = min(point[1] for point in roof)
    xs = [at(-0.01, 0)[0], at(1.01, 0)[0]]
    return min(xs), top, max(xs), ground - (WHEEL_Y * length - radius)


def _rect(a, b):
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])]


def _windows(draw, cabin, panes: int, at):
    (rx0, y0), (rx1, ry), (fx1, _), (fx0, _) = cabin
    inset = 0.02
    lo, hi = y0 + inset, ry - inset
    start, end = rx1 + inset, fx1 + 0.5 * (fx0 - fx1) - inset
    step = (end - start) / panes
    for pane in range(panes):
        a, b = start + pane * step + 0.008, start + (pane + 1) * step - 0.008
        draw.polygon([at(a, lo), at(a, hi), at(b, hi), at(b, lo)], fill=(60, 80, 100))


def _lights(draw, car: CarClass, at, body_top):
    head = at(0.97, body_top * 0.75)
    size = 0.025
    shape = car.model_index % 3
    x, y = head
    scale = abs(at(1, 0)[0] - at(0, 0)[0])
    r = size * scale
    if shape == 0:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 245, 190))
    elif shape == 1:
        draw.rectangle([x - r, y - 0.6 * r, x + r, y + 0.6 * r], fill=(255, 245, 190))
    else:
        draw.rectangle([x - 1.4 * r, y - 0.25 * r, x + 1.4 * r, y + 0.25 * r], fill=(255, 245, 190))
    tail = at(0.02, body_top * 0.75)
    tr = r * (0.6 + 0.25 * (car.year_index % 3))
    draw.rectangle([tail[0] - tr, tail[1] - tr, tail[0] + tr, tail[1] + tr], fill=(200, 20, 20))


def _wheel(draw, centre, radius, style: int):
    x, y = centre
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(25, 25, 25))
    hub = radius * 0.55
    draw.ellipse([x - hub, y - hub, x + hub, y + hub], fill=(170, 170, 175))
    if style in (1, 2):
        for k in range(4 if style == 1 else 6):
            angle = np.pi * k / (2 if style == 1 else 3)
            draw.line([x, y, x + hub * np.cos(angle), y + hub * np.sin(angle)], fill=(60, 60, 60), width=2)
    elif style == 3:
        draw.ellipse([x - hub * 0.5, y - hub * 0.5, x + hub * 0.5, y + hub * 0.5], fill=(60, 60, 60))


def front_view(draw, car: CarClass, rng, box, rear: bool):
    """Frontal (or rear) view: symmetric body, glass, lights, grille, wheels at the corners."""
    centre, ground, length = box
    width = 0.45 * length
    body_top, cabin = SHAPES[car.shape]
    roof = max(y for _, y in cabin)
    body, trim = make_colours(car, rng)
    x0, x1 = centre - width / 2, centre + width / 2
    draw.rectangle([x0 + 0.03 * width, ground - 0.09 * length, x0 + 0.2 * width, ground], fill=(25, 25, 25))
    draw.rectangle([x1 - 0.2 * width, ground - 0.09 * length, x1 - 0.03 * width, ground], fill=(25, 25, 25))
    draw.rectangle([x0, ground - body_top * length, x1, ground - 0.05 * length], fill=body)
    top = ground - roof * length
    draw.polygon([(x0 + 0.1 * width, ground - body_top * length), (x0 + 0.2 * width, top),
                  (x1 - 0.2 * width, top), (x1 - 0.1 * width, ground - body_top * length)], fill=body)
    glass = [(x0 + 0.16 * width, ground - (body_top + 0.01) * length), (x0 + 0.23 * width, top + 0.02 * length),
             (x1 - 0.23 * width, top + 0.02 * length), (x1 - 0.16 * width, ground - (body_top + 0.01) * length)]
    draw.polygon(glass, fill=(60, 80, 100))
    light = (200, 20, 20) if rear else (255, 245, 190)
    ly = ground - body_top * 0.7 * length
    for lx in (x0 + 0.12 * width, x1 - 0.12 * width):
        draw.ellipse([lx - 0.06 * width, ly - 0.04 * width, lx + 0.06 * width, ly + 0.04 * width], fill=light)
    grille = (240, 240, 240) if rear else trim
    draw.rectangle([centre - 0.18 * width, ly - 0.03 * width, centre + 0.18 * width, ly + 0.05 * width], fill=grille)
    bumper = BUMPERS[car.year_index % len(BUMPERS)]
    draw.rectangle([x0, ground - 0.07 * length, x1, ground - 0.04 * length], fill=bumper)
    return x0, top, x1, ground


def draw_car(car: CarClass, rng, width: int, height: int, viewpoint: int = 3):
    """A ``width``×``height`` picture of ``car`` seen from ``viewpoint`` (CompCars codes 1…5).

    Returns ``(image, (x1, y1, x2, y2))`` with the box 1-based and inclusive.
    """
    image, horizon = background(width, height, rng)
    draw = ImageDraw.Draw(image)
    frontal = viewpoint in (1, 2)
    length = width * rng.uniform(0.55, 0.8) * (0.8 if viewpoint in (4, 5) else 1.0)
    length = min(length * (1.4 if frontal else 1.0), 1.5 * height)  # the tallest shape is 0.5 × length
    ground = min(height - 2, horizon + rng.uniform(0.15, 0.35) * height)
    if frontal:
        centre = rng.uniform(0.3, 0.7) * width
        box = front_view(draw, car, rng, (centre, ground, length), rear=viewpoint == 2)
    else:
        left = rng.uniform(0.02, max(0.03, 0.98 - length / width)) * width
        facing_right = viewpoint != 5 if viewpoint in (4, 5) else bool(rng.random() < 0.5)
        face = {4: "front", 5: "rear"}.get(viewpoint, "")
        box = side_view(draw, car, rng, (left, ground, length), facing_right, face)
    x1, y1, x2, y2 = box
    clip = lambda value, top: int(min(max(round(value), 1), top))  # noqa: E731
    return image, (clip(x1 + 1, width), clip(y1 + 1, height), clip(x2 + 1, width), clip(y2 + 1, height))
