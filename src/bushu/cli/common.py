"""What every verb shares: the Typer apps, the two consoles, and how a user's error is reported."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from bushu.errors import BushuError

app = typer.Typer(
    no_args_is_help=True, add_completion=False,
    help="bushu (部署): package, verify, optimise, protect and serve trained models.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train an application model and package it.")
app.add_typer(train_app, name="train")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Every `BushuError` becomes one line on stderr and exit status 1: no traceback for a user's mistake."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BushuError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
