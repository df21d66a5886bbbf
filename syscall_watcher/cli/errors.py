"""How a mistake reaches the user: one red line, ``swatch: error: ...``, and a non-zero exit."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from syscall_watcher.errors import SwatchError
from syscall_watcher.text import one_line

F = TypeVar("F", bound=Callable[..., Any])


def error_line(message: str) -> None:
    """The one line every user mistake prints: ``swatch: error: ...`` (controls escaped, so a
    path with a newline or an escape sequence in it cannot make it two lines or recolour it)."""
    typer.secho(f"swatch: error: {one_line(message)}", fg="red", err=True)


def user_errors(fn: F) -> F:
    """A SwatchError becomes one red line on stderr and exit status 1 — never a traceback.

    Last resort: an OSError that escaped the core (a path the user gave that is not what it
    should be) is one line too, naming the file and the system's reason.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SwatchError as err:
            error_line(str(err))
            raise typer.Exit(1) from None
        except OSError as err:
            where = f"{os.fsdecode(err.filename)}: " if err.filename is not None else ""
            error_line(f"{where}{err.strerror or err}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
