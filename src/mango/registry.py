"""One tiny registry type shared by every plug-in family.

Adding a plug-in is one ``@REGISTRY.register("name")`` line next to its
class or factory; the CLI's ``--optimizer NAME`` and ``mango list`` read the
same table, so there is no string switch anywhere else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Generic, TypeVar

from .errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory table for one plug-in family."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}
        self._prefixes: dict[str, Callable[..., T]] = {}  # "ng:" -> factory(suffix, *args, **kwargs)
        self._fallbacks: list[tuple[Callable[[str], bool], Callable[..., T]]] = []  # (matches, factory(name, ...))

    def register(self, name: str, doc: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._items[name] = factory
            text = doc or (factory.__doc__ or "").strip()
            self._docs[name] = text.splitlines()[0] if text else ""
            return factory

        return deco

    def register_prefix(self, prefix: str, doc: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a family of names ``PREFIX<suffix>`` (e.g. ``ng:DE``): the factory gets the suffix first.

        Listed as one row ``PREFIXNAME``; the factory itself rejects a bad suffix.
        """
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self.register(prefix + "NAME", doc)(factory)
            self._prefixes[prefix] = factory
            return factory

        return deco

    def register_fallback(self, label: str, matches: Callable[[str], bool],
                          doc: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a factory for names no entry or prefix claims but ``matches`` accepts (e.g. a
        user's ``pkg.mod:factory``); the factory gets the whole name first. Listed as one row ``label``."""
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self.register(label, doc)(factory)
            self._fallbacks.append((matches, factory))
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        for prefix, factory in self._prefixes.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return partial(factory, name[len(prefix):])
        if name in self._items and all(self._items[name] is not f for _, f in self._fallbacks):
            return self._items[name]
        for matches, factory in self._fallbacks:
            if matches(name):
                return partial(factory, name)
        raise unknown(self.kind, name, sorted(self._items))

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, for ``mango list``."""
        return dict(sorted(self._docs.items()))

    def __contains__(self, name: str) -> bool:
        return (name in self._items or any(name.startswith(p) and len(name) > len(p) for p in self._prefixes)
                or any(matches(name) for matches, _ in self._fallbacks))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
