"""The seed's predictor: an MLP from the conditioning vector to every parameter of the target.

Its output size is the family's parameter count at the container architecture (filled in from
the data, never typed by hand); targets smaller than the container are masked in the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLPPredictor(nn.Module):
    """``in_dim → hidden… → out_dim``; the last layer starts at zero (the zoo mean, see module)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (128, 128), activation: str = "relu", zero_init_output: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"predictor.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)
        if zero_init_output:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.head(self.body(features))
