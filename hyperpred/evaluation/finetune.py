"""How many fine-tuning steps a prediction saves: Adam from the predicted weights, all targets at once.

``finetune_steps_fraction`` = (Adam steps from the predicted weights until a target's query loss
first reaches its trained counterpart's) / (steps the trained target took). 0 means the
prediction is already as good as training; 1 means it saves nothing. Fine-tuning uses the zoo's
own machinery (its gradient kernel, its batched Adam, its learning rate and batch), so started
from a target's init it retraces the zoo's run exactly and the comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    """``[B]`` first step at which each target's query loss ≤ ``threshold`` (0: already there; inf: not
    within ``max_steps``).

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
        kernel = select_kernel(family, task, recipe, flat.device, container=container)(
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


class FinetuneFraction:
    """The ``finetune_steps_fraction`` test metric of a run: its budget, its inputs per split, its per-target values.

    ``cfg`` holds the zoo's recipe (``lr``, ``steps``, ``batch_size``) and ``finetune.*`` (``enabled``,
    ``max_factor``, ``check_every``, ``seed``); the metric is off without ``steps`` or with ``enabled: false``.
    """

    #: The batch entries fine-tuning reads (the prediction is kept next to them).
    KEEP = ("archs", "support_x", "support_y", "query_x", "query_y", "query_loss")

    def __init__(self, cfg: dict[str, Any] | None) -> None:
        self.cfg = dict(cfg or {})
        self.inputs: dict[int, list[dict[str, Tensor]]] = {}

    def budget(self) -> int:
        """Adam steps allowed when fine-tuning from predictions (0: metric off)."""
        ft = self.cfg
        if not ft.get("enabled", True) or not ft.get("steps"):
            return 0
        return max(1, round(float(ft.get("max_factor", 1.0)) * int(ft["steps"])))

    def collect(self, idx: int, pred: Tensor, batch: dict[str, Tensor]) -> None:
        """Keep one test batch of split ``idx`` (nothing when the metric is off)."""
        if self.budget():
            self.inputs.setdefault(idx, []).append({"pred": pred.detach(), **{k: batch[k] for k in self.KEEP}})

    def per_target(self, idx: int, family: TargetFamily, task: Task, container: Sequence[int]) -> dict[str, Tensor]:
        """Per target of split ``idx``: Adam steps from the prediction to the trained query loss / the zoo's steps.

        Targets that do not get there within the budget count at the budget, flagged in ``finetune_reached``.
        {} when nothing was collected for the split.
        """
        inputs = self.inputs.pop(idx, None)
        if not inputs:
            return {}
        ft = self.cfg
        with torch.inference_mode(False):  # Lightning tests under inference mode; fine-tuning needs autograd
            b = {k: torch.cat([i[k] for i in inputs]).clone() for k in inputs[0]}
            steps = finetune_steps(
                family,
                task,
                b["pred"],
                b["archs"],
                container,
                b["support_x"],
                b["support_y"],
                b["query_x"],
                b["query_y"],
                threshold=b["query_loss"],
                lr=float(ft["lr"]),
                max_steps=self.budget(),
                batch_size=ft.get("batch_size"),
                check_every=int(ft.get("check_every", 1)),
                seed=int(ft.get("seed", 0)),
            )
        reached = torch.isfinite(steps)
        steps = torch.where(reached, steps, torch.full_like(steps, float(self.budget())))
        return {"finetune_steps_fraction": steps / int(ft["steps"]), "finetune_reached": reached.to(steps.dtype)}
