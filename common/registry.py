"""One registry style for every pluggable piece: a name → object table filled by a decorator.

Example::

    BACKBONES = Registry("backbone", where="model.backbone")

    @BACKBONES.register("resnet50")
    def resnet50(...): ...

    BACKBONES.get("resnet5")
    # UnknownName: model.backbone: unknown backbone 'resnet5'; choose one of: … (did you mean 'resnet50'?)

``register`` takes aliases (old names kept so saved configurations still load); ``get`` accepts them
and ``canonical`` maps them to the registered name. The lookup error is raised here, once, naming
the configuration key or flag (``where``), so callers never wrap lookups themselves.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, Optional, Tuple, TypeVar

from common.errors import UserError, describe_choices

T = TypeVar("T")


class UnknownName(UserError, ValueError):
    """A name that no entry of a registry has (a user error; also a ``ValueError``)."""


class Registry(Generic[T]):
    """Named entries of one kind; ``where`` is the config key or flag that selects one."""

    def __init__(self, kind: str, where: str = ""):
        self.kind, self.where = kind, where
        self._entries: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator storing the decorated object under ``name`` (and ``aliases``); names are unique."""

        def decorator(entry: T) -> T:
            for key in (name,) + aliases:
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[name] = entry
            self._aliases.update({alias: name for alias in aliases})
            return entry

        return decorator

    def canonical(self, name: str, where: Optional[str] = None) -> str:
        """The registered name for ``name`` or one of its aliases (``UnknownName`` otherwise)."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        prefix = where or self.where
        message = describe_choices(self.kind, name, self.names())
        raise UnknownName(f"{prefix}: {message}" if prefix else message)

    def get(self, name: str, where: Optional[str] = None) -> T:
        """The entry called ``name`` (or an alias of it); ``where`` overrides the key named in errors."""
        return self._entries[self.canonical(name, where)]

    def names(self) -> List[str]:
        """Registered names (not aliases), sorted."""
        return sorted(self._entries)

    def aliases(self) -> Dict[str, str]:
        """``{alias: registered name}``."""
        return dict(self._aliases)

    def items(self) -> List[Tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
