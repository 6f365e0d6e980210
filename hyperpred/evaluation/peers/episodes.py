"""Where meta-learners get their training tasks: the training split's tasks, or fresh ones from the task.

Both return whole meta-batches ``{support_x, support_y, query_x, query_y}`` (``[B, n, ...]``) in one
indexing or one ``Task.sample`` call: no loop over tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task

EPISODE_KEYS = ("support_x", "support_y", "query_x", "query_y")


class EpisodeSource:
    """Samples meta-batches of tasks; ``fresh`` draws new tasks from ``task`` instead of reusing ``split``'s."""

    def __init__(
        self,
        split: dict[str, Tensor],
        family: TargetFamily,
        task: Task,
        container: Sequence[int],
        fresh: bool = False,
    ) -> None:
        self.split, self.family, self.task, self.container, self.fresh = split, family, task, tuple(container), fresh
        self.size = len(split["archs"])

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, Tensor]:
        rows = torch.randint(self.size, (batch,), generator=generator)
        if not self.fresh:
            return {k: self.split[k][rows].to(torch.get_default_dtype()) for k in EPISODE_KEYS}
        return fresh_episodes(self.task, self.family, self.split["archs"][rows], self.container, generator)


def fresh_episodes(
    task: Task, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
) -> dict[str, Tensor]:
    """One new task per row of ``archs``, from the task distribution."""
    b = task.sample(family, archs, container, generator)
    return {k: getattr(b, k) for k in EPISODE_KEYS}
