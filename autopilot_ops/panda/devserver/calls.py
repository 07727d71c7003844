"""Registering API methods and checking a call before it runs.

``invoke`` repeats ``pandaserver/api/v1/common.py: request_validation`` step by step, with its messages:
identity (``secure``), production role, HTTP method, argument binding (``Argument error: ...``), then types
(``Type error: ...``), casting GET parameters from text first. Handlers are plain functions
``handler(context, request, **params)`` whose annotated parameters are the method's wire parameters.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.panda.devserver.auth import Identity
from autopilot_ops.panda.protocol import MESSAGE_PROD_ROLE, MESSAGE_SSL, make_envelope


@dataclass(frozen=True)
class Request:
    """What a handler may know of the HTTP request: who calls, and with which method."""

    identity: Identity | None
    http_method: str


@dataclass(frozen=True)
class Parameter:
    """One wire parameter and how to check it, worked out once when the method is registered."""

    name: str
    default: Any
    expected: Any  # the annotation without ``| None``, or None when unannotated


@dataclass(frozen=True)
class Endpoint:
    module: str
    name: str
    handler: Callable[..., dict[str, Any]]
    secure: bool
    production: bool
    http_method: str | None
    parameters: dict[str, Parameter]
    required: tuple[str, ...]


class Registry:
    """The methods of each ``/api/v1/<module>``; anything else is forbidden."""

    def __init__(self) -> None:
        self._endpoints: dict[tuple[str, str], Endpoint] = {}

    def method(
        self, module: str, *, secure: bool = True, production: bool = False, http_method: str | None = None
    ) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
        def register(handler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
            hints = typing.get_type_hints(handler)
            wire = list(inspect.signature(handler).parameters.values())[2:]  # after (context, request)
            parameters = {
                p.name: Parameter(p.name, p.default, _without_none(hints[p.name]) if p.name in hints else None)
                for p in wire
            }
            required = tuple(p.name for p in wire if p.default is inspect.Parameter.empty)
            self._endpoints[(module, handler.__name__)] = Endpoint(
                module, handler.__name__, handler, secure, production, http_method, parameters, required
            )
            return handler

        return register

    def find(self, module: str, name: str) -> Endpoint | None:
        return self._endpoints.get((module, name))


def invoke(endpoint: Endpoint, context: Any, request: Request, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the call as the real server does, then run it; returns the reply envelope."""
    if endpoint.secure and request.identity is None:
        return make_envelope(False, MESSAGE_SSL)
    if endpoint.production and (request.identity is None or not request.identity.production):
        return make_envelope(False, MESSAGE_PROD_ROLE)
    if endpoint.http_method and endpoint.http_method != request.http_method:
        return make_envelope(False, f"expecting {endpoint.http_method}, received {request.http_method}")
    # The messages of inspect.Signature.bind: the first missing parameter, else the first unknown one.
    for name in endpoint.required:
        if name not in params:
            return make_envelope(False, f"Argument error: missing a required argument: '{name}'")
    for name in params:
        if name not in endpoint.parameters:
            return make_envelope(False, f"Argument error: got an unexpected keyword argument '{name}'")
    arguments = dict(params) if request.http_method == "GET" else params  # GET values are cast in a copy
    for name, value in params.items():
        parameter = endpoint.parameters[name]
        if parameter.expected is None or parameter.default == value:
            continue
        if request.http_method == "GET":
            try:
                value = _cast_text(value, parameter.expected, parameter.default)
            except (ValueError, TypeError, SyntaxError, AttributeError):
                return make_envelope(
                    False,
                    f"Type error: '{name}' with value '{value}' could not be casted to type"
                    f" {_type_name(parameter.expected)} from {type(value).__name__}.",
                )
            arguments[name] = value
        problem = _type_problem(name, value, parameter.expected, parameter.default)
        if problem:
            return make_envelope(False, problem)
    return endpoint.handler(context, request, **arguments)  # the handler's own defaults fill in the rest


def _type_problem(name: str, value: Any, core: Any, default: Any) -> str | None:
    if type(value) is core:
        return None
    origin = typing.get_origin(core)
    if origin is list:
        if not isinstance(value, list):
            return f"Type error: '{name}' must be of type list, got {type(value).__name__}."  # origin.__name__
        args = typing.get_args(core)
        if args and not all(isinstance(item, args[0]) for item in value):
            return f"Type error: All elements in '{name}' must be {args[0].__name__}."
        return None
    if value is None and default is None:
        return None
    if not isinstance(value, _isinstance_target(core)):
        return f"Type error: '{name}' must be of type {_type_name(core)}, got {type(value).__name__}."
    return None


def _cast_text(value: Any, core: Any, default: Any) -> Any:
    """GET parameters arrive as text; cast them as ``request_validation`` does."""
    if value == "None" and default is None:
        return None
    if core is str:
        return value
    if core is bool:
        return value.lower() in ("true", "1")
    if core is int:
        return int(float(value))
    if core is float:
        return float(value)
    if typing.get_origin(core) is list:
        items = [value] if isinstance(value, str) else list(value)
        element = (typing.get_args(core) or (str,))[0]
        if element is int:
            return [int(float(item)) for item in items]
        if element is float:
            return [float(item) for item in items]
        if element is bool:
            return [item.lower() in ("true", "1") for item in items]
        return items
    return value


def _without_none(expected: Any) -> Any:
    """``X | None`` -> ``X``: the real handlers declare ``x: int = None`` and skip the ``None`` default."""
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        members = [member for member in typing.get_args(expected) if member is not type(None)]
        if len(members) == 1:
            return members[0]
        return typing.Union[tuple(members)]  # noqa: UP007 - rebuilt from a tuple of members
    return expected


def _isinstance_target(core: Any) -> Any:
    if typing.get_origin(core) is typing.Union or isinstance(core, types.UnionType):
        return typing.get_args(core)
    return typing.get_origin(core) or core


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is list:
        return "List"
    if typing.get_origin(expected) is typing.Union or isinstance(expected, types.UnionType):
        return " | ".join(_type_name(member) for member in typing.get_args(expected))
    return getattr(expected, "__name__", str(expected))
