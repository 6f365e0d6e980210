"""Hand-written forward and backward for the 1→H→1 ReLU MLP, in autograd's own float32 operations.

A zoo's labels should be the weights a plain PyTorch loop would have produced, not merely close
to them: Adam amplifies rounding noise near ReLU kinks, so two float32 trajectories that differ
in their last bit can end 3e-4 apart in loss (the seed's loop itself does, if its 100 samples are
merely shuffled: docs/benchmarks.md). This kernel therefore performs, for a whole chunk of
targets at once, the very operations autograd performs for ``nn.Linear → nn.ReLU → nn.Linear``
under ``nn.MSELoss``, with the same operand layouts, so that each target's batched GEMM slice
calls the BLAS routine the per-target ``mm`` calls. Per step (``g = dL/dy``):

    pre  = b1 + x·w1          addcmul: the BLAS's k=1 GEMM rounds once (fused multiply-add) on
                              AVX2/AVX-512 CPUs; a separate mul and add would round twice
    h    = relu(pre)
    y    = (w2 @ hᵀ) + b2     one dot per sample, then the bias (addmm's gemv)
    dw2  = gᵀ @ h,  db2 = Σ_n g_n
    gpre = threshold_backward(g ⊗ w2, h)
    dw1  = xᵀ @ gpre, db1 = Σ_n gpre_n

With :class:`~hyperpred.zoo.adam.BatchedAdam` (``torch.optim.Adam``'s single-tensor arithmetic)
a target as wide as the zoo's container is bit-identical to one trained by the seed's loop on
the same CPU (``test_mlp_kernel_is_bit_identical_to_the_seed_loop``; docs/benchmarks.md says
where this holds). All ``[c, m, H]`` tensors live in
buffers allocated once; every GEMM writes a contiguous buffer (a strided ``out=`` changes the
BLAS call, and with it the bits). Padded units have ``w1 = b1 = 0``: their ``h`` is 0, so all
their gradients are exactly 0 and they stay 0.
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

_threshold_backward = torch.ops.aten.threshold_backward.grad_input


class MLPClosedFormKernel(Kernel):
    name = "mlp_closed"

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
        self.hidden = container[0]
        self._buffers: dict[int, tuple[Tensor, ...]] = {}

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        return type(family) is MLPFamily

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        return 4 * n * (2 * container[0] + 12) + 64 * container[0]

    def _bufs(self, m: int) -> tuple[Tensor, ...]:
        """Buffers for steps of ``m`` samples, allocated once: no temporaries of size ``c·m·H``."""
        if m not in self._buffers:
            c, h = self.x.shape[0], self.hidden
            new = lambda *shape: torch.empty(shape, dtype=self.x.dtype, device=self.x.device)  # noqa: E731
            self._buffers[m] = (new(c, m, h), new(c, m, h), new(c, 1, m), new(c, 1, h), new(c, 1, h))
        return self._buffers[m]

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        x, y = self.batch(rows)  # [c, m, 1]
        hid, gpre, pred, dw1, dw2 = self._bufs(x.shape[1])
        h = self.hidden
        w1, b1, w2, b2 = (params[:, i * h : (i + 1) * h].unsqueeze(1) for i in range(4))  # b2: [c, 1, 1]
        torch.addcmul(b1, x, w1, out=hid).clamp_min_(0)  # one rounding (fused multiply-add), as addmm with k=1
        torch.bmm(w2, hid.transpose(1, 2), out=pred).add_(b2)
        g = output_grad_(self.task, pred.transpose(1, 2), y, self.out_mask)  # [c, m, 1]
        g_row = g.transpose(1, 2)  # [c, 1, m]
        torch.bmm(g_row, hid, out=dw2)
        torch.sum(g_row, 2, out=out[:, 3 * h :])
        torch.mul(g, w2, out=gpre)
        _threshold_backward(gpre, hid, 0, grad_input=gpre)
        torch.bmm(x.transpose(1, 2), gpre, out=dw1)
        out[:, :h].copy_(dw1[:, 0])
        torch.sum(gpre, 1, out=out[:, h : 2 * h])
        out[:, 2 * h : 3 * h].copy_(dw2[:, 0])
