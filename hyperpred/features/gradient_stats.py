"""The gradient of the probe's task loss on the support data, per probe parameter.

For a linear target this is ``2·(W_probe − W_task)·Σ_xx`` up to the bias terms: it carries the
task's solution linearly, which is why gradient features make teacher tasks learnable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import register


@register("feature")
class GradientStats(Feature):
    name = "gradient_stats"

    def dim(self) -> int:
        return self.ctx.family.num_params(self.ctx.probe_arch) + 1

    def __call__(self, batch: FeatureBatch) -> Tensor:
        ctx = self.ctx
        x, y, archs = batch["support_x"], batch["support_y"], batch["archs"]
        with torch.enable_grad():
            params = {k: v.detach().clone().requires_grad_(True) for k, v in ctx.probe_batch(x.shape[0]).items()}
            pred = ctx.family.forward(params, x)
            loss = ctx.task.loss(pred, y, ctx.family.output_mask(archs, ctx.container))
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
        flat = torch.cat([g.flatten(1) for g in grads], dim=1)
        return torch.cat([flat, loss.detach().unsqueeze(1)], dim=1)
