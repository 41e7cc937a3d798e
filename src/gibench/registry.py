"""One small registry class; every kind (datasets, models, metrics, attacks, ...) has one instance."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Generic, Iterator, TypeVar

if TYPE_CHECKING:
    from .params import ParamSpec

T = TypeVar("T")


class UnknownName(KeyError):
    """A config named something no registry entry provides."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._params: dict[str, "ParamSpec"] = {}

    def register(self, name: str, params: "ParamSpec | None" = None) -> Callable[[T], T]:
        """Decorator; ``params``: the parameters the entry takes from the config (checked at DAG build)."""
        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            if params is not None:
                self._params[name] = params
            return obj

        return deco

    def add(self, name: str, obj: T, params: "ParamSpec | None" = None) -> T:
        return self.register(name, params)(obj)

    def params(self, name: str) -> "ParamSpec | None":
        """The declared parameters of entry ``name`` (None: it declares none)."""
        self.get(name)
        return self._params.get(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
