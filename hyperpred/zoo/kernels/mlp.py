"""Closed-form forward and backward for the 1→H→1 ReLU MLP, with one big tensor per step.

With a scalar input, hidden unit j of target b is ``relu(x·w1_j + b1_j)``, so its activation is
its *gate* ``M = [x·w1_j + b1_j > 0]`` times an affine function of x. Everything the forward and
the backward pass need is then a contraction of the gate tensor ``M [c, m, H]`` with small
per-target vectors:

    y    = x · (M @ (w1⊙w2)) + M @ (b1⊙w2) + b2
    S1_j = Σ_n g_n x_n M_nj,   S0_j = Σ_n g_n M_nj          (g = dL/dy)
    dw1 = w2 ⊙ S1,  db1 = w2 ⊙ S0,  dw2 = w1 ⊙ S1 + b1 ⊙ S0,  db2 = Σ_n g_n

Per step that is one fused multiply-add to build the pre-activations, one in-place comparison,
and two batched matrix products, all into buffers allocated once, instead of autograd's dozen
temporaries of that size. Padded units have ``w1 = b1 = 0``, so their gate is 0 and their
gradients are exactly 0: they stay zero, as with the masked forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.targets.mlp import MLPFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.base import Kernel, output_grad_
from hyperpred.zoo.spec import TrainRecipe


class MLPGateKernel(Kernel):
    name = "mlp_gate"

    def __init__(
        self, family: TargetFamily, task: Task, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor, batch_size: int | None = None
    ) -> None:
        super().__init__(family, task, archs, container, x, y, batch_size)
        self.hidden = container[0]
        self._buffers: dict[int, tuple[Tensor, ...]] = {}

    @classmethod
    def supports(cls, family: TargetFamily, task: Task, recipe: TrainRecipe, device: torch.device) -> bool:
        return type(family) is MLPFamily

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        return 4 * n * (container[0] + 12) + 64 * container[0]

    def _bufs(self, m: int) -> tuple[Tensor, ...]:
        if m not in self._buffers:
            c, h = self.x.shape[0], self.hidden
            new = lambda *shape: torch.empty(shape, dtype=self.x.dtype, device=self.x.device)  # noqa: E731
            self._buffers[m] = (new(c, m, h), new(c, 2, h), new(c, 2, m), new(c, 2, m), new(c, 2, h), new(c, m, 1))
        return self._buffers[m]

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        x3, y3 = self.batch(rows)
        x = x3[..., 0]
        gate, coef, proj, gx, sums, pred3 = self._bufs(x.shape[1])
        pred = pred3[..., 0]
        h = self.hidden
        w1, b1, w2, b2 = params[:, :h], params[:, h : 2 * h], params[:, 2 * h : 3 * h], params[:, 3 * h :]
        torch.addcmul(b1.unsqueeze(1), x3, w1.unsqueeze(1), out=gate)
        gate.gt_(0)
        torch.mul(w1, w2, out=coef[:, 0])
        torch.mul(b1, w2, out=coef[:, 1])
        torch.bmm(coef, gate.transpose(1, 2), out=proj)
        torch.addcmul(proj[:, 1], x, proj[:, 0], out=pred).add_(b2)
        g = output_grad_(self.task, pred3, y3, self.out_mask)[..., 0]
        torch.mul(g, x, out=gx[:, 0])
        gx[:, 1].copy_(g)
        torch.bmm(gx, gate, out=sums)
        torch.mul(w2, sums[:, 0], out=out[:, :h])
        torch.mul(w2, sums[:, 1], out=out[:, h : 2 * h])
        torch.mul(w1, sums[:, 0], out=out[:, 2 * h : 3 * h]).addcmul_(b1, sums[:, 1])
        torch.sum(g, 1, keepdim=True, out=out[:, 3 * h :])
