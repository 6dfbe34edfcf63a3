"""Checking plugin parameters against the types a plugin class declares, before it is built.

A plugin's configuration is its constructor's keyword parameters: their annotations are
the types (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal[...]``) and an
:class:`harness.api.interfaces.Bounds` in ``Annotated[int, Bounds(1, 65536)]`` the allowed
range. :func:`check_params` runs for every plugin kind when the registry creates one, so a
value of the wrong type or range (``-p n_mfcc=abc``, ``-p clip_seconds=nan``,
``-p n_fft=1000000000``) is refused with one line naming the plugin and the parameter
(:class:`BadInputError`, exit code 2) instead of failing somewhere inside the plugin.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Literal, Union

from harness.api.errors import BadInputError
from harness.api.interfaces import Bounds


def _constructors(cls: type) -> list[type]:
    """``cls`` and, while a constructor takes ``**kwargs``, the bases it forwards them to: the
    classes in ``cls``'s MRO that define their own ``__init__``, up to the first that takes
    no ``**kwargs`` (so a subclass adding parameters to its base's declares both)."""
    chain = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        chain.append(klass)
        if not _own_kwargs(klass):
            break
    return chain


def _own_kwargs(klass: type) -> bool:
    return any(p.kind is p.VAR_KEYWORD
               for p in inspect.signature(klass.__init__).parameters.values())


def declared_params(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls``'s constructor and of the base constructors it
    forwards ``**kwargs`` to (``self`` and ``**kwargs`` left out; a subclass's wins)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in _constructors(cls):
        for n, p in inspect.signature(klass.__init__).parameters.items():
            if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                params.setdefault(n, p)
    return params


def _hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(_constructors(cls)):     # a subclass's annotation wins
        try:
            hints.update(typing.get_type_hints(klass.__init__, include_extras=True))
        except Exception:   # an annotation that does not resolve: check names only
            pass
    return hints


def _takes_kwargs(cls: type) -> bool:
    """Whether ``cls`` accepts parameters it does not declare: the last constructor of its
    forwarding chain still takes ``**kwargs``."""
    chain = _constructors(cls)
    return bool(chain) and _own_kwargs(chain[-1])


def check_params(cls: type, where: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``cls``'s declared parameters; ints given as 5.0 become 5.

    ``where`` names the plugin in messages (``"repr 'mfcc'"``). Raises BadInputError for
    an unknown parameter, a value of the wrong type, or one outside its Bounds.
    """
    declared = declared_params(cls)
    unknown = [n for n in params if n not in declared]
    if unknown and not _takes_kwargs(cls):
        raise BadInputError(f"{where}: unknown parameter {unknown[0]!r}; parameters: "
                            f"{', '.join(declared) or 'none'}")
    hints = _hints(cls)
    return {name: _check_value(f"{where}: parameter {name}", value, hints.get(name, Any))
            for name, value in params.items()}


def _check_value(where: str, value: Any, hint: Any) -> Any:
    bounds = None
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        bounds = next((e for e in extras if isinstance(e, Bounds)), None)
    value = _check_type(where, value, hint)
    if bounds is not None and value is not None:
        if bounds.min is not None and value < bounds.min:
            raise BadInputError(f"{where} must be >= {bounds.min}, got {value!r}")
        if bounds.max is not None and value > bounds.max:
            raise BadInputError(f"{where} must be <= {bounds.max}, got {value!r}")
    return value


def _check_type(where: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_value(where, value, option)
            except BadInputError as exc:
                errors.append(exc)
        raise errors[0] if errors else BadInputError(f"{where}: unexpected value {value!r}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise BadInputError(f"{where} must be one of {', '.join(map(str, choices))}, "
                                f"got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise BadInputError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInputError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInputError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise BadInputError(f"{where} must be a finite number, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise BadInputError(f"{where} must be a string, got {value!r}")
        return value
    return value   # another declared type (a tuple, a dataclass): the plugin checks it
