"""What every verb shares: the Typer apps, the two consoles, and how a user's error is reported."""

from __future__ import annotations

import functools
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bushu.cli.output import configure, make_console
from bushu.errors import BushuError

app = typer.Typer(
    no_args_is_help=True, add_completion=False,
    help="bushu (部署): package, verify, optimise, protect and serve trained models.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train an application model and package it.")
app.add_typer(train_app, name="train")

out = make_console()
err = make_console(stderr=True)
#: Set by the global options: `--debug` adds tracebacks to error lines, `--verbose` lets other libraries talk.
state = {"debug": False, "verbose": False}
F = TypeVar("F", bound=Callable[..., Any])
#: The options every verb that writes a package takes.
Output = Annotated[Path, typer.Option("-o", "--output", help="package directory to write")]
Force = Annotated[bool, typer.Option(help="replace OUTPUT if it exists")]
Seed = Annotated[int, typer.Option(help="random seed (data, init, order)")]


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="print the traceback behind an error line")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="show other libraries' logs and progress bars")] = False,
) -> None:
    """bushu (部署): package, verify, optimise, protect and serve trained models."""
    state.update(debug=debug, verbose=verbose)
    configure(verbose=verbose)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def user_errors(fn: F) -> F:
    """Every `BushuError` becomes one line on stderr and exit status 1: no traceback for a user's mistake."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BushuError as exc:
            if state["debug"]:
                err.print(traceback.format_exc(), markup=False, highlight=False, soft_wrap=True)
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def cleans_up_on_sigterm(fn: F) -> F:
    """For verbs that write packages: SIGTERM becomes `SystemExit` (status 143) while they run, so
    the staging folder is removed as on any error; by default Python dies at once and leaves it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
            return fn(*args, **kwargs)
        previous = signal.signal(signal.SIGTERM, _exit)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
