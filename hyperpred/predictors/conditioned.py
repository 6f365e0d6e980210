"""A predictor whose conditioning is the fixed features *and* a learned code of the support set.

``head`` is any predictor (the MLP, the width-agnostic decoder); it receives the concatenation
``[z, encoder(support)]`` as its input, so the set encoder combines with whatever fixed features
the run selects (``features=[arch]`` for the encoder alone, or probe statistics next to it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.predictors.base import Predictor, call_with_context
from hyperpred.predictors.set_encoder import SetEncoder
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily


@register("predictor")
class SetConditionedPredictor(Predictor):
    """``head([z, encoder(support_x, support_y)])``; output space and width-agnosticism are the head's."""

    needs_support = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        family: TargetFamily,
        container: Sequence[int],
        encoder: Callable[..., SetEncoder],
        head: Callable[..., Predictor],
        use_features: bool = True,
    ) -> None:
        super().__init__()
        if not callable(encoder) or not callable(head):
            raise ConfigError("predictor.encoder and predictor.head must be configs with _target_ and _partial_: true")
        self.encoder = encoder(
            x_dim=math.prod(family.input_shape(container)), y_dim=math.prod(family.output_shape(container))
        )
        self.use_features = use_features
        head_in = (in_dim if use_features else 0) + self.encoder.out_dim
        self.head = call_with_context(head, head_in, out_dim, family, container)
        self.output_space = getattr(self.head, "output_space", "normalized")
        self.width_agnostic = getattr(self.head, "width_agnostic", False)

    def set_data_stats(self, stats: Mapping[str, Tensor]) -> None:
        self.encoder.set_data_stats(stats)
        if hasattr(self.head, "set_data_stats"):
            self.head.set_data_stats(stats)

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:
        if batch is None or "support_x" not in batch or "support_y" not in batch:
            raise ValueError("this predictor encodes the support set: pass a batch with support_x and support_y")
        code = self.encoder(batch["support_x"], batch["support_y"])
        cond = torch.cat([z, code], dim=1) if self.use_features else code
        return self.head(cond, batch, container)
