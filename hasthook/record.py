"""hasthook's data classes: one rule, every class that holds data derives from Record.

Record is the part of dataclasses hasthook uses, without importing
dataclasses: that pulls in inspect, ast and dis, a fifth of what a hook
spends before it reads its argv, and the classes hastd's every event touches
(event, config, hastctl output, rules, actions) are data classes. One kind
everywhere, so nobody has to know which module is on the hook's path.
Fields come from the same annotations:

    class Step(Record):
        name: str
        argv: list[str] = fresh(list)     # a new list per instance
        ok: bool | None = None

gives Step("x"), Step(name="x", ok=True), ==, repr, as_dict() and
replace(**changes). `frozen=True` in the class line refuses assignment after
__init__ and makes instances hashable.
"""

from __future__ import annotations

_MISSING = object()


class _Fresh:
    __slots__ = ("factory",)

    def __init__(self, factory):
        self.factory = factory


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _T = TypeVar("_T")

    def fresh(factory: Callable[[], _T]) -> _T:
        """A default made anew for each instance, as dataclasses' default_factory."""
        ...
else:
    fresh = _Fresh  # read as a default's value: `= fresh(dict)`


class Record:
    """Fields from the class's annotations, in order; defaults from its attributes."""

    _fields: tuple[str, ...] = ()
    _defaults: dict = {}
    _frozen = False

    def __init_subclass__(cls, frozen: bool = False, **kw) -> None:
        super().__init_subclass__(**kw)
        own = tuple(n for n in cls.__dict__.get("__annotations__", {})
                    if not n.startswith("_"))
        cls._fields = (*cls._fields, *(n for n in own if n not in cls._fields))
        cls._defaults = {**cls._defaults, **{n: cls.__dict__[n] for n in own
                                                   if n in cls.__dict__}}
        cls._frozen = frozen or cls._frozen
        cls.__hash__ = Record._hash if cls._frozen else None  # type: ignore[assignment,method-assign]

    def _hash(self) -> int:
        return hash(tuple(getattr(self, n) for n in self._fields))

    def __init__(self, *args, **kwargs) -> None:
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, "
                            f"{len(args)} given")
        values = dict(zip(names, args, strict=False))  # args <= names, checked above
        for name in names[len(args):]:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = self._defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
                if isinstance(value, _Fresh):
                    value = value.factory()
            values[name] = value
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected or repeated "
                            f"argument(s) {', '.join(map(repr, kwargs))}")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r} of a frozen "
                                 f"{type(self).__name__}")
        object.__setattr__(self, name, value)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({inner})"

    def as_dict(self) -> dict:
        """Field -> value, nested records, lists and dicts copied (dataclasses.asdict)."""
        return {n: _plain(getattr(self, n)) for n in self._fields}

    def replace(self, **changes):
        """A copy with some fields changed (dataclasses.replace)."""
        return type(self)(**{**{n: getattr(self, n) for n in self._fields}, **changes})


def _plain(value):
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
