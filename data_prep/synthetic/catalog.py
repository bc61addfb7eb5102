"""Which classes a synthetic dataset has: makes, models, body types, years (deterministic per seed).

Names are chosen to exercise the real datasets' traps: two-word makes (``Aston Martin``), a
lower-case make (``smart``), a model containing ``/`` (``Ram C/V Cargo Van Minivan``), a class
name without a body type (``Chevrolet Corvette ZR1``) and, for CompCars, misspelled and duplicate
make names (``BWM``, ``Hyundai `` with a trailing space, ``Lotus`` twice).
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

STANFORD_MAKES = (
    "Aston Martin", "Ram", "Chevrolet", "smart", "BMW", "Land Rover", "AM General", "Mercedes-Benz",
    "Audi", "Ford", "Hyundai", "Toyota", "Volvo", "Nissan", "Kia", "Mazda", "FIAT", "Honda", "Jeep",
    "Lexus", "Dodge", "Buick", "Acura", "Cadillac", "Jaguar", "Porsche", "Subaru", "Suzuki",
)
COMPCARS_MAKES = (
    "BWM", "Hyundai ", "Audi", "Lotus", "Chevy", "Benz", "Volvo", "Lotus", "Zoyte", "Buck",
    "Toyota", "Nissan", "Kia", "Mazda", "Honda", "Jeep", "Lexus", "Dodge", "Geely", "Haval",
)
# Stanford body-type tokens and the drawn shape they map to.
STANFORD_TYPES = {
    "Sedan": "sedan", "SUV": "suv", "Coupe": "coupe", "Convertible": "convertible",
    "Hatchback": "hatchback", "Wagon": "wagon", "Minivan": "minivan", "Crew Cab": "pickup", "Van": "van",
}
# CompCars car_type.mat names (type id = position + 1) and their drawn shapes.
COMPCARS_TYPES = (
    ("MPV", "minivan"), ("SUV", "suv"), ("sedan", "sedan"), ("hatchback", "hatchback"),
    ("minibus", "van"), ("fastback", "coupe"), ("estate", "wagon"), ("pickup", "pickup"),
    ("hardtop convertible", "convertible"), ("sports", "coupe"), ("crossover", "suv"),
    ("convertible", "convertible"),
)
YEARS = ("2007", "2009", "2010", "2011", "2012")
SPECIAL_MODELS = {"Ram": ("C/V Cargo Van", "Minivan"), "Chevrolet": ("Corvette ZR1", None)}


@dataclasses.dataclass(frozen=True)
class CarClass:
    """One class: what it is called and the indices that drive its drawing."""

    make: str
    make_index: int
    model: str
    model_index: int
    body: Optional[str]  # the dataset's body-type label (None: the name has none)
    shape: str  # drawn body shape
    year: str
    year_index: int

    @property
    def stanford_name(self) -> str:
        parts = [self.make, self.model] + ([self.body] if self.body else []) + [self.year]
        return " ".join(parts)


def make_name(pool, index: int) -> str:
    return pool[index] if index < len(pool) else f"Make{index + 1}"


def model_name(make_index: int, model_index: int) -> str:
    letters = "ABCDEFGHJKLMNPRSTVXZ"
    return f"{letters[(3 * make_index + model_index) % len(letters)]}{model_index + 1}{make_index % 10}"


def stanford_classes(makes: int, models_per_make: int, seed: int) -> List[CarClass]:
    """Classes for a Stanford-style dataset, sorted by class name (like ``cars_meta.mat``)."""
    rng = np.random.default_rng(seed)
    types = list(STANFORD_TYPES)
    classes = []
    for make_index in range(makes):
        make = make_name(STANFORD_MAKES, make_index)
        for model_index in range(models_per_make):
            name, body = model_name(make_index, model_index), types[(make_index + 2 * model_index) % len(types)]
            if model_index == 0 and make in SPECIAL_MODELS:
                name, body = SPECIAL_MODELS[make]
            shape = STANFORD_TYPES.get(body, "coupe") if body else "coupe"
            year_index = int(rng.integers(len(YEARS)))
            classes.append(CarClass(make, make_index, name, model_index, body, shape, YEARS[year_index], year_index))
    return sorted(classes, key=lambda car: car.stanford_name)


def compcars_classes(makes: int, models_per_make: int, seed: int) -> List[CarClass]:
    """Classes for a CompCars-style dataset (make names raw, as in ``make_model_name.mat``)."""
    rng = np.random.default_rng(seed + 1)
    classes = []
    for make_index in range(makes):
        make = make_name(COMPCARS_MAKES, make_index)
        for model_index in range(models_per_make):
            type_index = (make_index + 2 * model_index) % len(COMPCARS_TYPES)
            body, shape = COMPCARS_TYPES[type_index]
            year_index = int(rng.integers(len(YEARS)))
            classes.append(CarClass(make, make_index, model_name(make_index, model_index), model_index,
                                    body, shape, YEARS[year_index], year_index))
    return classes
