"""A rich progress bar for zoo builds (targets done, targets/s, ETA) that is silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Targets per second over rich's recent-speed window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- targets/s" if not speed else f"{speed:,.0f} targets/s", style="progress.data.speed")


@contextmanager
def zoo_progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)`` that moves a bar of ``total`` targets; a no-op when not ``enabled``.

    Rich draws live only on a terminal; in batch logs (SLURM, CI) it prints the final state once,
    and the builder's per-shard log lines carry the progress.
    """
    if not enabled:
        yield lambda n: None
        return
    columns = (
        TextColumn("[bold]zoo[/] {task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task_id = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task_id, n)
