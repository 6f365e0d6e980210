"""The architecture itself as numbers (the seed's examples 1 and 2 condition on this alone)."""

from __future__ import annotations

from torch import Tensor

from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import register


@register("feature")
class ArchFeature(Feature):
    """Each architecture field (hidden units, channels, kernel size) as a float."""

    name = "arch"
    describes_architecture = True

    def dim(self) -> int:
        return len(self.ctx.family.arch_fields)

    def __call__(self, batch: FeatureBatch) -> Tensor:
        return batch["archs"].float()
