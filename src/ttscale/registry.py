"""One small generic registry for methods, scorers and engines.

Entries are registered as ``"module:attribute"`` strings so that an optional dependency is
imported only when the entry is used."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Generic, TypeVar

from ttscale.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, str | T] = {}

    def register(self, name: str, target: str | T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(unknown_name_message(self.kind, name, self._entries))
        target = self._entries[name]
        if isinstance(target, str):
            module_name, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module_name), attribute)
            self._entries[name] = target
        return target  # type: ignore[return-value]


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1) or [
        k for k in known if k in name or name in k][:1]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Available: {', '.join(known)}."


def parse_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
    """Check ``value`` against a closed set of names, with a did-you-mean error."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(unknown_name_message(kind, value, allowed))
    return value

