"""How many fine-tuning steps a prediction saves: Adam from the predicted weights, all targets at once.

``finetune_steps_fraction`` = (Adam steps from the predicted weights until a target's query loss
first reaches its trained counterpart's) / (steps the trained target took). 0 means the
prediction is already as good as training; 1 means it saves nothing. Fine-tuning uses the zoo's
recipe (Adam, learning rate, batch) on the support set, so the comparison is like for like.

Adam is elementwise, so one optimizer over the stacked ``[B, P]`` parameters, stepping the sum
of per-target losses, is exactly B independent runs; no loop over targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.training import per_target_loss


def finetune_steps(
    family: TargetFamily,
    task: Task,
    flat: Tensor,
    archs: Tensor,
    container: Sequence[int],
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    threshold: Tensor,
    lr: float,
    max_steps: int,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``[B]`` first step at which each target's query loss ≤ ``threshold`` (0: already there; inf: never within ``max_steps``)."""
    b, n = support_x.shape[:2]
    steps = torch.full((b,), float("inf"), dtype=flat.dtype, device=flat.device)
    if b == 0:
        return steps

    def reached(p: Tensor, step: int) -> bool:
        q = per_target_loss(family, task, family.unflatten(p, container), archs, container, query_x, query_y)
        steps.copy_(torch.where(torch.isinf(steps) & (q <= threshold), torch.full_like(steps, float(step)), steps))
        return bool(torch.isfinite(steps).all())

    params = flat.detach().clone()
    with torch.no_grad():
        if reached(params, 0) or max_steps <= 0:
            return steps
    params.requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=lr)
    out_mask = family.output_mask(archs, container)
    rows = torch.arange(b, device=flat.device).unsqueeze(1)
    minibatch = batch_size is not None and batch_size < n
    with torch.enable_grad():
        for step in range(1, max_steps + 1):
            if minibatch:
                idx = torch.randint(n, (b, batch_size), generator=generator).to(flat.device)
                xb, yb = support_x[rows, idx], support_y[rows, idx]
            else:
                xb, yb = support_x, support_y
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(family.forward(family.unflatten(params, container), xb, archs), yb, out_mask)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                if reached(params, step):
                    break
    return steps
