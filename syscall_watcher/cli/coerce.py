"""Typer's option parsing without pydantic for the plain values swatch's options take.

typer (0.2x) coerces every parameter of the invoked command through a pydantic ``TypeAdapter``
built on first use, even for an option left at its default: that imports pydantic (~55 ms)
and builds one adapter per parameter (~20 for `swatch run`, ~25 ms) on every command, before
anything else runs (bench/README.md, "Streaming and start-up").

``install()`` wraps typer's ``build_runtime_param`` so that each parameter first tries a plain
conversion that gives exactly what typer's adapter gives, for the values that have one obvious
meaning: a ``str``; an ``int`` written as optional ``-`` and digits; a ``float`` written as
digits with an optional fraction; a ``Path``; an Enum choice; a list of those; a value that
already has its type (a default). Anything else — an empty or odd spelling (" 5", "1_000",
"1e3", "nan"), a value out of ``min``/``max``, a type not listed here — goes to typer's own
adapter, built then, so its value and its error message are typer's, word for word.
tests/test_cli_coerce.py compares the two on every parameter swatch declares.

With a typer that has no ``build_runtime_param`` (older releases parse with click alone),
``install()`` does nothing.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Callable, get_args, get_origin

try:
    from typer import core as _core
    from typer._coercion import RuntimeParam, TypeDescriptor
    from typer._param_types import coerce_cli_choice, coerce_cli_path
except ImportError:  # pragma: no cover - a typer without the pydantic coercion layer
    _core = None  # type: ignore[assignment]

_INT = re.compile(r"-?[0-9]{1,18}\Z")
_FLOAT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?\Z")


class Declined(Exception):
    """The plain conversion has no answer for this value: typer's adapter decides."""


Convert = Callable[[Any, Any, Any], Any]  # (value, param, ctx) → value, or raise Declined


def _bounded(number: Any, info: Any) -> Any:
    if (info.min is not None and number < info.min) or (info.max is not None
                                                         and number > info.max):
        raise Declined
    return number


def _leaf(annotation: Any, info: Any) -> Convert | None:
    """The plain conversion of one value, or None when this annotation has none."""
    if getattr(info, "parser", None) is not None or getattr(info, "clamp", False):
        return None
    if annotation in (str, bool):
        def as_is(value: Any, _param: Any, _ctx: Any) -> Any:
            if type(value) is not annotation:
                raise Declined
            return value
        return as_is
    if annotation in (int, float):
        pattern = _INT if annotation is int else _FLOAT

        def to_number(value: Any, _param: Any, _ctx: Any) -> Any:
            if type(value) is annotation:
                return _bounded(value, info)
            if type(value) is str and pattern.match(value):
                return _bounded(annotation(value), info)
            raise Declined
        return to_number
    if annotation is Path and info.path_type is None:
        def to_path(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is str and value and "\0" not in value:
                value = Path(value)
            elif not isinstance(value, Path):
                raise Declined
            try:  # typer's own checks (exists, dir_okay …); their errors come from typer
                return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
            except Exception as err:
                raise Declined from err
        return to_path
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = list(annotation)

        def to_choice(value: Any, _param: Any, ctx: Any) -> Any:
            try:
                return coerce_cli_choice(value, choices=choices,
                                         case_sensitive=info.case_sensitive, ctx=ctx)
            except Exception as err:
                raise Declined from err
        return to_choice
    return None


def plain_conversion(annotation: Any, info: Any) -> Convert | None:
    """The plain conversion for a parameter's annotation (a list of a leaf too), or None."""
    if get_origin(annotation) is list:
        (item_type,) = get_args(annotation)
        leaf = _leaf(item_type, info)
        if leaf is None:
            return None

        def to_list(value: Any, param: Any, ctx: Any) -> Any:
            items = value if isinstance(value, (list, tuple)) else [value]
            return [leaf(item, param, ctx) for item in items]
        return to_list
    if get_origin(annotation) is not None:
        return None
    return _leaf(annotation, info)


if _core is not None:
    class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc,valid-type]
        """A parameter's coercion: the plain conversion, else typer's (built when needed)."""

        def __init__(self, descriptor: TypeDescriptor, convert: Convert,
                     build: Callable[[TypeDescriptor], Any]) -> None:
            super().__init__(parameter_info=descriptor.parameter_info,
                             annotation=descriptor.annotation)
            object.__setattr__(self, "_convert", convert)
            object.__setattr__(self, "_typer", lambda: build(descriptor))
            object.__setattr__(self, "_built", None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self._convert(value, param, ctx)
            except Declined:
                pass
            if self._built is None:
                object.__setattr__(self, "_built", self._typer())
            return self._built._coerce_value(value, param=param, ctx=ctx)


def install() -> None:
    """Make typer try the plain conversion first (idempotent; nothing on an older typer)."""
    if _core is None or not hasattr(_core, "build_runtime_param"):
        return
    stock = _core.build_runtime_param
    if getattr(stock, "swatch_plain", False):
        return

    def build_runtime_param(descriptor: TypeDescriptor) -> Any:
        convert = (plain_conversion(descriptor.annotation, descriptor.parameter_info)
                   if descriptor.file_annotation is None else None)
        if convert is None:
            return stock(descriptor)
        return PlainRuntimeParam(descriptor, convert, stock)

    build_runtime_param.swatch_plain = True  # type: ignore[attr-defined]
    build_runtime_param.stock = stock  # type: ignore[attr-defined]
    _core.build_runtime_param = build_runtime_param
