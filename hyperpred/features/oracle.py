"""The task's true parameters (amplitude and phase, teacher weights, ...): an upper bound.

Named *oracle* because no real task comes with its descriptor; use it to measure how much of the
gap to the trained targets is the predictor's and how much is missing information.
"""

from __future__ import annotations

from torch import Tensor

from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import register


@register("feature")
class OracleFeature(Feature):
    name = "oracle"
    is_oracle = True

    def dim(self) -> int:
        return self.ctx.task.descriptor_dim(self.ctx.family, self.ctx.container)

    def __call__(self, batch: FeatureBatch) -> Tensor:
        return batch["descriptor"].flatten(1)
