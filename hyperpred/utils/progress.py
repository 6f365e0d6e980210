"""A rich progress bar for long loops (targets/s, ETA) that is silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def zoo_progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows ``label``, targets done, targets/s and ETA when enabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]zoo[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} targets/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task_id = progress.add_task(label, total=total, rate="-")

        def advance(n: int) -> None:
            progress.advance(task_id, n)
            speed = progress.tasks[0].speed
            progress.update(task_id, rate=f"{speed:.0f}" if speed else "-")

        yield advance
