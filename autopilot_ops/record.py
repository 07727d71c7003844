"""Value classes for the pilot's closure, without ``dataclasses``.

The pilot runs from a zipapp on worker nodes with a 16 MiB memory budget, and ``dataclasses`` imports
``inspect`` (with ``ast``, ``dis`` and ``tokenize``): about 1 MiB of it, for code generation the pilot does not
need. A :class:`Record` subclass declares its fields the way a dataclass does, as annotated class attributes in
order, with an optional default or :func:`field`; it gets the same ``__init__`` (positional or keyword
arguments), ``__repr__``, ``__eq__`` (same class, equal compared fields) and ``__hash__``. It is frozen unless
declared ``class C(Record, frozen=False)``: assigning to or deleting an attribute raises
:class:`FrozenInstanceError`, and a frozen record hashes by its compared fields (a mutable one is unhashable, as
a dataclass with ``eq=True``). Fields live in the instance's ``__dict__`` in their order, so ``vars()`` works.
Every name annotated in a record's own body is a field (there is no ``ClassVar``); a subclass adds fields after
its bases'. The defining module must use ``from __future__ import annotations``, so annotations stay strings.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NO_DEFAULT = object()


class FrozenInstanceError(AttributeError):
    """An attribute of a frozen :class:`Record` was assigned or deleted."""


class Field:
    """A field's options, as :func:`field` gives them."""

    __slots__ = ("compare", "default_factory", "repr")

    def __init__(self, default_factory: Callable[[], Any] | None, repr: bool, compare: bool) -> None:
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


_PLAIN = Field(None, repr=True, compare=True)


def field(*, default_factory: Callable[[], Any] | None = None, repr: bool = True, compare: bool = True) -> Any:
    """A field whose default ``default_factory`` makes per instance; ``repr=False`` leaves it out of ``repr()``,
    ``compare=False`` out of ``==`` and ``hash()``; as ``dataclasses.field``."""
    return Field(default_factory, repr, compare)


class Record:
    """Base of value classes: see the module's docstring."""

    __slots__ = ()
    #: the fields in order; their defaults and default factories; the fields in ``repr()`` and in ``==``
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}
    _factories: dict[str, Callable[[], Any]] = {}
    _shown: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()

    def __init_subclass__(cls, frozen: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__annotate__" in cls.__dict__ and "__annotations__" not in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: a record's module must use 'from __future__ import annotations'")
        fields, defaults, factories = list(cls._fields), dict(cls._defaults), dict(cls._factories)
        shown, compared = list(cls._shown), list(cls._compared)
        # not inspect.get_annotations: importing inspect is what this module avoids, and the names are all it needs
        for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063
            value = cls.__dict__.get(name, _NO_DEFAULT)
            options = value if isinstance(value, Field) else _PLAIN
            if options.default_factory is not None:
                factories[name] = options.default_factory
            elif value is not _NO_DEFAULT and options is _PLAIN:
                defaults[name] = value
            elif defaults or factories:
                raise TypeError(f"{cls.__qualname__}: field {name!r} without a default follows fields with one")
            if options is not _PLAIN:
                delattr(cls, name)
            fields.append(name)
            shown += [name] if options.repr else []
            compared += [name] if options.compare else []
        cls._fields, cls._defaults, cls._factories = tuple(fields), defaults, factories
        cls._shown, cls._compared = tuple(shown), tuple(compared)
        if frozen:
            cls.__setattr__, cls.__delattr__ = _refuse_assignment, _refuse_deletion
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = _equal
            cls.__hash__ = _hash if frozen else None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if len(args) > len(cls._fields):
            raise TypeError(f"{cls.__qualname__}() takes {len(cls._fields)} arguments but {len(args)} were given")
        values = dict(zip(cls._fields, args))
        for name, value in kwargs.items():
            if name not in cls._fields:
                raise TypeError(f"{cls.__qualname__}() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{cls.__qualname__}() got multiple values for argument {name!r}")
            values[name] = value
        for name in cls._fields:
            if name in values:
                value = values[name]
            elif name in cls._factories:
                value = cls._factories[name]()
            elif name in cls._defaults:
                value = cls._defaults[name]
            else:
                raise TypeError(f"{cls.__qualname__}() missing required argument: {name!r}")
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{type(self).__qualname__}({shown})"

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._compared)


def _equal(self: Record, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return self._key() == other._key()


def _hash(self: Record) -> int:
    return hash(self._key())


def _refuse_assignment(self: Record, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: Record, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
