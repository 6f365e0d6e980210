"""Adam for a whole chunk of targets at once, over one flat ``[B, P]`` parameter tensor.

Adam is elementwise, so one update over the stacked parameters of B targets is exactly B
independent Adam runs. This class performs the same arithmetic, in the same order, as
``torch.optim.Adam``'s single-tensor path (the CPU default), so a target trained here follows the
trajectory of the seed's one-module-one-optimizer loop. Its state and the denominator live in
buffers allocated once: no temporaries per step, hence no allocator churn or page faults.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchedAdam:
    """In-place Adam over ``params`` (updated in place) with preallocated moment buffers."""

    def __init__(self, params: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self._denom = torch.empty_like(params)
        self.step_count = 0

    def step(self, grad: Tensor) -> None:
        """One Adam step with ``grad`` (same shape as the parameters)."""
        self.step_count += 1
        step = float(self.step_count)
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2_sqrt = (1 - self.beta2**step) ** 0.5
        torch.sqrt(self.exp_avg_sq, out=self._denom)
        self._denom.div_(bias_correction2_sqrt).add_(self.eps)
        self.params.addcdiv_(self.exp_avg, self._denom, value=-(self.lr / bias_correction1))
