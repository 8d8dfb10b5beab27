"""One progress-bar shape for every training loop the CLI runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def epoch_bar(description: str, epochs: int) -> Iterator[Callable[[int, int, float], None]]:
    """Yield a callback `(epoch, epochs, loss)` that advances a bar showing the latest loss."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=epochs, loss="-")

        def advance(epoch: int, total: int, loss: float) -> None:
            bar.update(task, completed=epoch, loss=f"{loss:.4f}")

        yield advance
