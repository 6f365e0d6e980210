"""The general kernel: autograd through the family's own batched forward. Works for any family."""

from __future__ import annotations

import torch
from torch import Tensor

from hyperpred.zoo.kernels.base import Kernel


class AutogradKernel(Kernel):
    """Gradients by reverse-mode autodiff of ``sum_b loss_b`` over the stacked parameters.

    Targets do not interact, so the gradient of the summed loss with respect to target b's slice
    of the stacked parameters is exactly target b's own gradient.
    """

    name = "autograd"

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        x, y = self.batch(rows)
        with torch.enable_grad():
            leaf = params.detach().requires_grad_(True)
            pred = self.family.forward(self.family.unflatten(leaf, self.container), x, self.archs)
            (g,) = torch.autograd.grad(self.task.loss(pred, y, self.out_mask).sum(), leaf)
        out.copy_(g)
