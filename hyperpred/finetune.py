"""How many fine-tuning steps a prediction saves: Adam from the predicted weights, all targets at once.

``finetune_steps_fraction`` = (Adam steps from the predicted weights until a target's query loss
first reaches its trained counterpart's) / (steps the trained target took). 0 means the
prediction is already as good as training; 1 means it saves nothing. Fine-tuning uses the zoo's
own machinery (its gradient kernel, its batched Adam, its learning rate and batch), so started
from a target's init it retraces the zoo's run exactly and the comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.adam import BatchedAdam
from hyperpred.zoo.kernels import select_kernel
from hyperpred.zoo.spec import TrainRecipe
from hyperpred.zoo.training import minibatch_rows, per_target_loss


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
    check_every: int = 1,
    seed: int = 0,
) -> Tensor:
    """``[B]`` first step at which each target's query loss ≤ ``threshold`` (0: already there; inf: not within "
        "``max_steps``).

    The query loss is checked every ``check_every`` steps (and at the last): a count is a multiple
    of it and never lower than the exact one (a dip below the threshold between two checks that
    is gone at the next one is missed). Stops as soon as every target got there.
    """
    b, n = support_x.shape[:2]
    steps = torch.full((b,), float("inf"), dtype=flat.dtype, device=flat.device)
    if b == 0:
        return steps

    def check(p: Tensor, step: int) -> bool:
        q = per_target_loss(family, task, family.unflatten(p, container), archs, container, query_x, query_y)
        steps.copy_(torch.where(torch.isinf(steps) & (q <= threshold), torch.full_like(steps, float(step)), steps))
        return bool(torch.isfinite(steps).all())

    with torch.no_grad():
        params = flat.detach() * family.flat_mask(archs, container).to(flat.dtype)  # padding exactly 0, as in the zoo
        if check(params, 0) or max_steps <= 0:
            return steps
        batch = batch_size if batch_size is not None and batch_size < n else None
        recipe = TrainRecipe(steps=max_steps, lr=lr, batch_size=batch)
        kernel = select_kernel(family, task, recipe, flat.device)(
            family, task, archs, container, support_x, support_y, batch
        )
        adam, grad = BatchedAdam(params, lr), torch.empty_like(params)
        for step in range(1, max_steps + 1):
            rows = None if batch is None else minibatch_rows(seed, step - 1, b, n, batch).to(flat.device)
            kernel.grad(params, grad, rows)
            adam.step(grad)
            if (step % check_every == 0 or step == max_steps) and check(params, step):
                break
    return steps
