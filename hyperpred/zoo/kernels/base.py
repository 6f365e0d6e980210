"""The contract of a training kernel: per-target gradients for a chunk of stacked targets.

The zoo trains every target with Adam on its own support set. Adam only needs, at each step, the
gradient of each target's loss with respect to its own parameters; *how* that gradient is
computed is the kernel's business. Kernels are interchangeable strategies (autograd over the
family's forward, closed-form backward passes, normal equations for quadratic losses) chosen per
family, task, recipe and device by :func:`hyperpred.zoo.kernels.select_kernel`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.spec import TrainRecipe


def is_plain_mse(task: Task) -> bool:
    """True when the task's loss is the stock masked MSE (then kernels may use its closed form)."""
    return type(task).loss is Task.loss and not getattr(task, "classification", False)


def mse_counts(out_mask: Tensor | None, pred: Tensor) -> Tensor:
    """Per-target number of real entries in ``pred`` ``[B, m, *out]``, counted as ``masked_mse`` does."""
    if out_mask is None:
        return torch.full((pred.shape[0],), float(pred[0].numel()), dtype=pred.dtype, device=pred.device)
    return (out_mask.flatten(1).sum(1).to(pred.dtype) * pred.shape[1]).clamp_min(1)


def output_grad_(task: Task, pred: Tensor, y: Tensor, out_mask: Tensor | None) -> Tensor:
    """Gradient of ``sum_b task.loss_b`` with respect to ``pred``, written over ``pred`` when possible.

    The stock MSE has the closed form ``2 (pred - y) · mask / count_b``, computed in place; any
    other loss (cross-entropy, a subclass's own) goes through autograd on the outputs alone,
    which are small next to the network's intermediate tensors.
    """
    if is_plain_mse(task):
        count = mse_counts(out_mask, pred)
        g = pred.sub_(y).mul_((2.0 / count).view(-1, *([1] * (pred.dim() - 1))))
        if out_mask is not None:
            g.mul_(out_mask.unsqueeze(1).to(g.dtype))
        return g
    with torch.enable_grad():
        leaf = pred.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(task.loss(leaf, y, out_mask).sum(), leaf)
    return g


class Kernel(ABC):
    """Gradients of each target's loss on its own (fixed) support set, for one chunk of targets.

    A kernel is built once per chunk (it may precompute anything that depends on the data alone)
    and then called once per Adam step with the chunk's flat parameters ``[c, P]``.
    """

    #: Name used in logs, benchmarks and ``strategy=`` arguments.
    name: str = ""
    #: Working-memory budget of one chunk (bytes). A constant per kernel, never read from the
    #: machine, so that chunk boundaries (and with them a zoo's bytes) do not depend on it.
    chunk_bytes: int = 64 * 2**20

    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        archs: Tensor,
        container: Sequence[int],
        x: Tensor,
        y: Tensor,
        batch_size: int | None = None,
    ) -> None:
        self.family, self.task, self.archs, self.container = family, task, archs, tuple(container)
        self.x, self.y = x, y
        self.batch_size = batch_size  # None: every step sees the whole support set; else rows are given per step
        self.out_mask = family.output_mask(archs, container)

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        """Whether this kernel computes exact gradients for this family, task and recipe.

        ``container`` is the chunk's container architecture where the caller knows it: a kernel
        that depends on the module's structure (``chain``) decides from the module built there.
        """
        return True

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        """Working memory one target needs (bytes), to size chunks under a fixed budget.

        The default assumes autograd: every layer's activations, a few times over, plus the data.
        It probes the family once on one zero input to learn the activation sizes.
        """
        archs = torch.tensor([list(container)])
        params = {k: torch.zeros(1, *s) for k, s in family.param_shapes(container).items()}
        x = torch.zeros(1, 1, *family.input_shape(container))
        acts = sum(a.numel() for a in family.activations(params, x, archs))
        per_sample = 4 * acts + 2 * x.numel() + 2 * torch.Size(family.output_shape(container)).numel()
        return 4 * n * per_sample + 16 * family.num_params(container)

    @abstractmethod
    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        """Write ``d loss_b / d params_b`` into ``out`` ``[c, P]``; ``rows`` ``[c, b]`` picks a mini-batch."""

    def loss(self, params: Tensor) -> Tensor:
        """Each target's loss ``[c]`` on its whole support set (for reporting, not training)."""
        named = self.family.unflatten(params, self.container)
        return self.task.loss(self.family.forward(named, self.x, self.archs), self.y, self.out_mask)

    def batch(self, rows: Tensor | None) -> tuple[Tensor, Tensor]:
        """The ``(x, y)`` of this step: the whole support set, or the rows of a mini-batch."""
        if rows is None:
            return self.x, self.y
        r = torch.arange(self.x.shape[0], device=rows.device).unsqueeze(1)
        return self.x[r, rows], self.y[r, rows]
