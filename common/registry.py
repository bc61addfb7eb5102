"""A tiny name → object registry filled by a decorator (one per pluggable piece).

Example::

    READERS = Registry("dataset")

    @READERS.register("stanford_cars")
    class StanfordCarsReader: ...

    READERS.get("stanford")  # ValueError listing the valid names and the closest match
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, TypeVar

from common.errors import describe_choices

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects; unknown names raise ``ValueError`` listing the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores the decorated object under ``name`` (names must be unique)."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry called ``name`` or raise ``ValueError`` naming the valid choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(describe_choices(self.kind, name, self._entries)) from None

    def names(self) -> list:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
