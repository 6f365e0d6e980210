"""Train a whole chunk of targets at once: stacked parameters, one batched Adam.

Adam is elementwise, so one ``torch.optim.Adam`` over the stacked ``[B, ...]`` parameters with
the *sum* of the per-target losses performs exactly the B independent Adam runs that the seed
wrote as a Python loop of B modules and B optimizers, in a handful of batched kernels per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.targets.base import Params, TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.spec import TrainRecipe


@dataclass
class TrainResult:
    params: Params  # trained, padded, [B, *shape]
    train_loss: Tensor  # [B] final support loss
    steps: int


def per_target_loss(family: TargetFamily, task: Task, params: Params, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor) -> Tensor:
    """Task loss of each target on its own data: ``[B]``."""
    return task.loss(family.forward(params, x, archs), y, family.output_mask(archs, container))


def train_targets(
    family: TargetFamily,
    task: Task,
    archs: Tensor,
    container: Sequence[int],
    init: Params,
    x: Tensor,
    y: Tensor,
    recipe: TrainRecipe,
    generator: torch.Generator | None = None,
) -> TrainResult:
    """Run ``recipe.steps`` Adam steps on every target's own ``(x, y)`` simultaneously."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=recipe.lr)
    out_mask = family.output_mask(archs, container)
    n = x.shape[1]
    rows = torch.arange(x.shape[0]).unsqueeze(1)
    for _ in range(recipe.steps):
        if recipe.batch_size is not None and recipe.batch_size < n:
            idx = torch.randint(n, (x.shape[0], recipe.batch_size), generator=generator)
            xb, yb = x[rows, idx], y[rows, idx]
        else:
            xb, yb = x, y
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(family.forward(params, xb, archs), yb, out_mask)
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        final = {k: v.detach() for k, v in params.items()}
        train_loss = per_target_loss(family, task, final, archs, container, x, y)
    return TrainResult(final, train_loss, recipe.steps)
