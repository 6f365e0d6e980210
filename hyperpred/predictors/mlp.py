"""The seed's predictor: an MLP from the conditioning vector to every parameter of the target.

Its output size is the family's parameter count at the container architecture (filled in from
the data, never typed by hand); targets smaller than the container are masked in the loss. It
cannot serve a wider architecture than the container: there is no output for the extra units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from hyperpred.predictors.base import ACTIVATIONS, Predictor, mlp
from hyperpred.registry import register

__all__ = ["MLPPredictor", "ACTIVATIONS"]


@register("predictor")
class MLPPredictor(Predictor):
    """``in_dim → hidden… → out_dim``; the last layer starts at zero (the zoo mean, see module)."""

    output_space = "normalized"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        zero_init_output: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"predictor.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.body, width = mlp(in_dim, hidden, activation)
        self.head = nn.Linear(width, out_dim)
        if zero_init_output:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:
        return self.head(self.body(z))
