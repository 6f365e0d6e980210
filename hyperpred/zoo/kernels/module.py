"""The kernel for any ``nn.Module`` target (ModuleFamily, target=sequential): autograd over stacked params.

The family's forward runs the container module over the whole chunk at once (``functional_call``
under ``vmap``); one reverse pass of the summed per-target loss gives every target its own
gradient (targets do not interact). The gradients of padded entries are then multiplied by the
prefix-box mask: a padded unit can receive a gradient (an activation with ``f(0) != 0`` feeds its
outgoing weights), and zero gradients keep the padding exactly zero under Adam, which is what
makes the container compute each smaller target's function.

``vmap(torch.func.grad(loss of one target))`` computes the same gradients; on the 1-40-40-1 MLP it
measured about 2x slower than this reverse pass over the vmapped forward on CPU, so it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.targets.module_family import ModuleFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.base import Kernel
from hyperpred.zoo.spec import TrainRecipe


class ModuleKernel(Kernel):
    """Reverse-mode gradients through the vmapped container module, padded entries masked to zero."""

    name = "module"

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
        super().__init__(family, task, archs, container, x, y, batch_size)
        self.mask = family.flat_mask(archs, container).to(x.dtype)

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        return isinstance(family, ModuleFamily)

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        x, y = self.batch(rows)
        with torch.enable_grad():
            leaf = params.detach().requires_grad_(True)
            pred = self.family.forward(self.family.unflatten(leaf, self.container), x, self.archs)
            (g,) = torch.autograd.grad(self.task.loss(pred, y, self.out_mask).sum(), leaf)
        torch.mul(g, self.mask, out=out)
