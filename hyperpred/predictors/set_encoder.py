"""A learned, permutation-invariant encoder of a task's support pairs ``(x, y)``.

Fixed features (activation or gradient statistics of a probe) see the task through a network
chosen in advance; a set encoder learns what to look at. Each pair is embedded by an MLP ``φ``,
the embeddings are pooled (mean: DeepSets; attention: learned queries attend over the set), and
an MLP ``ρ`` maps the pooled vector to the task code. Pooling makes the code independent of the
order of the support pairs, which carries no information.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hyperpred.errors import ConfigError
from hyperpred.predictors.base import mlp
from hyperpred.registry import register

POOLINGS = ("mean", "attention")


@register("predictor")
class SetEncoder(nn.Module):
    """``{(x_j, y_j)} → code [B, out_dim]``; inputs are standardized with the training split's moments.

    ``x_fourier`` > 0 appends ``sin``/``cos`` of that many fixed random projections of ``x``
    (scale ``fourier_scale``): periodic structure in x becomes linear for ``φ``. With
    ``products`` these features are also multiplied by every y value, so that the pooled code
    holds the cross-moments ``mean_j y_j ψ(x_j)`` (for a sine task, its amplitude times the cosine
    and sine of its phase) directly instead of asking ReLUs to emulate the products.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        out_dim: int = 64,
        hidden: Sequence[int] = (128, 128),
        rho_hidden: Sequence[int] = (128,),
        pooling: str = "mean",
        num_heads: int = 4,
        num_seeds: int = 1,
        x_fourier: int = 0,
        fourier_scale: float = 1.0,
        activation: str = "relu",
        seed: int = 0,
        products: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"predictor.encoder.pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if not hidden:
            raise ConfigError("predictor.encoder.hidden must list at least one layer width")
        self.x_dim, self.y_dim, self.out_dim, self.pooling = x_dim, y_dim, out_dim, pooling
        for name, dim in (("x_mean", x_dim), ("y_mean", y_dim)):
            self.register_buffer(name, torch.zeros(dim))
        for name, dim in (("x_std", x_dim), ("y_std", y_dim)):
            self.register_buffer(name, torch.ones(dim))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(x_dim, x_fourier, generator=g) * fourier_scale)
        self.products = products
        pair_dim = x_dim + y_dim + 2 * x_fourier + (2 * x_fourier * y_dim if products else 0)
        self.phi, width = mlp(pair_dim, hidden, activation)
        if pooling == "attention":
            if width % num_heads:
                raise ConfigError(
                    f"predictor.encoder: the last hidden width {width} must be divisible by num_heads={num_heads}"
                )
            self.seeds = nn.Parameter(torch.randn(num_seeds, width) / math.sqrt(width))
            self.attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
            width *= num_seeds
        self.rho, rho_width = mlp(width, rho_hidden, activation)
        self.out = nn.Linear(rho_width, out_dim)

    def set_data_stats(self, stats: Mapping[str, Tensor]) -> None:
        for name in ("x_mean", "x_std", "y_mean", "y_std"):
            key = f"support_{name}"
            if key in stats:
                getattr(self, name).copy_(stats[key].reshape(-1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b, n = x.shape[:2]
        x = x.reshape(b, n, -1)
        y = y.reshape(b, n, -1).to(x.dtype)
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            raise ValueError(
                f"set encoder built for x with {self.x_dim} and y with {self.y_dim} values per sample, got "
                f"{x.shape[-1]} and {y.shape[-1]}"
            )
        x = (x - self.x_mean) / self.x_std
        y = (y - self.y_mean) / self.y_std
        parts = [x, y]
        if self.projection.shape[1]:
            proj = x @ self.projection
            waves = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
            parts.append(waves)
            if self.products:
                parts.append((y.unsqueeze(-1) * waves.unsqueeze(-2)).flatten(2))
        h = self.phi(torch.cat(parts, dim=-1))  # [B, n, width]
        if self.pooling == "mean":
            pooled = h.mean(1)
        else:
            queries = self.seeds.unsqueeze(0).expand(b, -1, -1)
            pooled = self.attention(queries, h, h, need_weights=False)[0].flatten(1)
        return self.out(self.rho(pooled))
