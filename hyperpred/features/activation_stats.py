"""Statistics of the probe network's activations on the task's support data.

Per probe layer: each unit's mean and standard deviation over the support samples; with
``use_targets`` also the support targets' mean and std and the Pearson correlation of every
probe unit with every target column. Without the targets the feature sees only the inputs x,
which tell tasks apart only when tasks differ in their inputs: keep it to show that.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import register


def _standardize(a: Tensor, eps: float = 1e-8) -> Tensor:
    a = a - a.mean(1, keepdim=True)
    return a / a.square().mean(1, keepdim=True).add(eps).sqrt()


@register("feature")
class ActivationStats(Feature):
    name = "activation_stats"

    def __init__(self, use_targets: bool = True) -> None:
        self.use_targets = use_targets

    def _unit_counts(self) -> tuple[list[int], int]:
        ctx = self.ctx
        # one forward of a single zero sample gives each layer's unit count without guessing
        x = torch.zeros(1, 1, *ctx.family.input_shape(ctx.container))
        units = [a.shape[-1] for a in ctx.family.activations(ctx.probe_params, x)]
        y_units = ctx.family.outputs_as_units(torch.zeros(1, 1, *ctx.family.output_shape(ctx.container))).shape[-1]
        return units, y_units

    def dim(self) -> int:
        units, y_units = self._unit_counts()
        d = 2 * sum(units)
        if self.use_targets:
            d += 2 * y_units + sum(units) * y_units
        return d

    def __call__(self, batch: FeatureBatch) -> Tensor:
        ctx = self.ctx
        x = batch["support_x"]
        acts = ctx.family.activations(ctx.probe_batch(x.shape[0]), x)
        blocks = []
        for a in acts:
            blocks += [a.mean(1), a.std(1, unbiased=False)]
        if self.use_targets:
            y = ctx.family.outputs_as_units(batch["support_y"])
            blocks += [y.mean(1), y.std(1, unbiased=False)]
            ys = _standardize(y)
            for a in acts:
                corr = torch.einsum("bmu,bmv->buv", _standardize(a), ys) / a.shape[1]
                blocks.append(corr.flatten(1))
        return torch.nan_to_num(torch.cat(blocks, dim=1))

    def describe(self) -> dict:
        return {"name": self.name, "use_targets": self.use_targets}
