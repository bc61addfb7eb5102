"""Split a Stanford Cars class name into make / model / body type / year.

Grammar (``../shared/datasets.md`` §1.5): ``<Make> <Model…> [<BodyType>] <Year>``.

* the year is always the last token (four digits);
* the make is the first token, except the three two-word makes below;
* the body type is the last token before the year, or the last two tokens for the two-token
  types; names such as ``Chevrolet Corvette ZR1 2012`` have none (``type`` is ``None``);
* everything between make and body type is the model (``C/V Cargo Van`` for
  ``Ram C/V Cargo Van Minivan 2012``; ``Phantom Drophead Coupe`` for the Rolls-Royce convertible).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from common.errors import UserError

TWO_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
TWO_TOKEN_BODY_TYPES = (
    "Crew Cab", "Regular Cab", "Extended Cab", "Cargo Van", "Quad Cab", "Club Cab",
    "Passenger Van", "Wagon Van",
)
ONE_TOKEN_BODY_TYPES = (
    "Sedan", "SUV", "Convertible", "Coupe", "Hatchback", "Wagon", "Minivan", "Van", "SuperCab",
)
_YEAR = re.compile(r"^(19|20)\d\d$")


@dataclasses.dataclass(frozen=True)
class CarName:
    """The parts of one class name; ``type`` is ``None`` when the name has no body-type token."""

    make: str
    model: str
    type: Optional[str]
    year: str


def parse_class_name(name: str) -> CarName:
    """Parse ``"Aston Martin V8 Vantage Convertible 2012"`` into its parts (see module docstring).

    Raises :class:`UserError` when the name does not end in a year or has no model part.
    """
    tokens = str(name).split()
    if len(tokens) < 3 or not _YEAR.match(tokens[-1]):
        raise UserError(
            f"class name {name!r} does not follow '<Make> <Model> [<BodyType>] <Year>' "
            "(expected at least three words ending in a four-digit year)"
        )
    year, body = tokens[-1], tokens[:-1]
    make_words = 2 if " ".join(body[:2]) in TWO_WORD_MAKES else 1
    make, rest = " ".join(body[:make_words]), body[make_words:]
    body_type = None
    if len(rest) >= 3 and " ".join(rest[-2:]) in TWO_TOKEN_BODY_TYPES:
        body_type, rest = " ".join(rest[-2:]), rest[:-2]
    elif len(rest) >= 2 and rest[-1] in ONE_TOKEN_BODY_TYPES:
        body_type, rest = rest[-1], rest[:-1]
    if not rest:
        raise UserError(f"class name {name!r} has no model between make {make!r} and the year")
    return CarName(make=make, model=" ".join(rest), type=body_type, year=year)


def folder_key(name: str) -> str:
    """Normalise a class name or class-folder name for matching.

    Class folders cannot contain ``/``, so re-packagings spell ``Ram C/V …`` as ``Ram C-V``,
    ``Ram CV`` or ``Ram C_V``; all of them, and the original, map to the same key.
    """
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())
