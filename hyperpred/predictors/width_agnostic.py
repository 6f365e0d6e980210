"""A decoder that generates each unit's parameters from the conditioning and the unit's coordinate.

The seed's MLP predictor has one output per parameter of one fixed container, so it cannot say
anything about a width it was not built for. This decoder instead runs one small network per unit:

    unit i of H:  coordinate u_i = (i + 0.5) / H  →  Fourier features  →  θ_i = g(cond, φ(u_i))
    shared tensors (the MLP's output bias):          θ_shared = s(cond)

so one checkpoint serves every width, including ones it never saw. The last step is bilinear:
``θ_i = M(cond) · ψ(u_i) + m(cond)`` with a task-dependent matrix ``M`` applied to a learned basis
``ψ`` of the coordinate (the conditioning also enters ψ's first layer). For a sine on a grid of
hinges the output weights are ``c(u) = -a·sin(t(u) + φ)``, bilinear in (a cos φ, a sin φ) and
fixed functions of u: a bilinear head represents it exactly, an additive one must emulate the
product with ReLUs and fits the task family far worse. For hidden units, ``u`` is a
*relative* position and the tensors that read the units (the MLP's output weights) are scaled by
``1/H`` (mean-field): the predicted function is then a Riemann sum
``b₂ + (1/H) Σ_i c(u_i) relu(w(u_i) x + b(u_i))`` that converges as H grows, instead of growing
with H. For output channels (a conv's, a linear layer's), a unit is a specific output: the
coordinate is its index (scaled by the training width), and no mean-field scaling applies.

Hidden-unit networks are decoded in *standardized data units*: the decoder describes a network
on x/σx → y/σy and the parameters are converted (incoming weights ÷ σx, outgoing weights and the
output bias × σy, plus the mean of y), with σx, σy, mean y the training split's support moments.
Without it the decoder's O(1) outputs would first have to grow to the data's scale, which Adam
does slowly.

``grid_spread`` sets where training starts (hidden units only): a fixed template makes the units
two grids of hinges over the data range, the first half of u facing right (incoming weights +1),
the second half facing left (−1), hinge positions ``spread·(2·frac(2u) − 1)`` in standardized x;
the learned part (zero-initialized) adds to it. From random decoder outputs instead, all units
start as near-copies of each other (they differ only through the smooth embedding of u) and the
functional loss stalls in that poor basis; with one direction only, hinges that drift right leave
the left of the range without any active unit, and nothing pulls them back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hyperpred.errors import ConfigError
from hyperpred.predictors.base import ACTIVATIONS, Predictor, mlp
from hyperpred.predictors.units import UnitLayout
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily

COORDINATES = ("auto", "relative", "index")


def fourier_features(u: Tensor, num_frequencies: int) -> Tensor:
    """``[..., 1 + 2K]``: ``u`` and ``sin/cos(2π k u)`` for ``k = 1..K``."""
    k = torch.arange(1, num_frequencies + 1, dtype=u.dtype, device=u.device)
    angle = 2 * math.pi * u.unsqueeze(-1) * k
    return torch.cat([u.unsqueeze(-1), torch.sin(angle), torch.cos(angle)], dim=-1)


@register("predictor")
class WidthAgnosticDecoder(Predictor):
    """Per-unit generation from ``(trunk(z), fourier(u))``; outputs raw parameters at any width."""

    output_space = "raw"
    width_agnostic = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        family: TargetFamily,
        container: Sequence[int],
        width_field: str | None = None,
        hidden: Sequence[int] = (256, 256),
        unit_hidden: Sequence[int] = (128, 128),
        num_frequencies: int = 4,
        coordinate: str = "auto",
        mean_field: bool | None = None,
        width_input: bool = False,
        activation: str = "gelu",
        grid_spread: float | None = 2.0,
    ) -> None:
        super().__init__()
        if coordinate not in COORDINATES:
            raise ConfigError(f"predictor.coordinate must be one of {list(COORDINATES)}, got {coordinate!r}")
        if not unit_hidden:
            raise ConfigError("predictor.unit_hidden must list at least one layer width")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"predictor.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.layout = UnitLayout(family, container, width_field)
        self.family = family
        self.container = tuple(container)
        if self.family.num_params(self.container) != out_dim:
            raise ConfigError(f"predictor.out_dim={out_dim} does not match family '{family.name}' at {self.container}")
        self.coordinate = ("relative" if self.layout.hidden else "index") if coordinate == "auto" else coordinate
        self.mean_field = self.layout.hidden if mean_field is None else bool(mean_field)
        self.num_frequencies = num_frequencies
        self.width_input = width_input
        #: index coordinates are scaled by the training width, so that they lie in (0, 1) there
        self.index_scale = float(self.container[self.layout.index])
        self.trunk, cond = mlp(in_dim, hidden, activation)
        emb = 1 + 2 * num_frequencies + (1 if width_input else 0)
        first = int(unit_hidden[0])
        # the first unit layer acting on [cond, emb] is split in two, so cond is projected once per target
        self.unit_cond = nn.Linear(cond, first)
        self.unit_emb = nn.Linear(emb, first, bias=False)
        self.unit_act = ACTIVATIONS[activation]()
        self.unit_body, width = mlp(first, unit_hidden[1:], activation)
        self.unit_head = nn.Linear(width, self.layout.unit_size)
        self.basis_width = width
        self.task_head = nn.Linear(cond, self.layout.unit_size * (width + 1))  # M(cond) and m(cond)
        nn.init.zeros_(self.task_head.weight)
        nn.init.zeros_(self.task_head.bias)
        self.grid_spread = grid_spread if self.layout.hidden else None
        if self.grid_spread is not None:
            nn.init.zeros_(self.unit_head.weight)
            nn.init.zeros_(self.unit_head.bias)
        weight_slots, bias_slots = torch.zeros(self.layout.unit_size), torch.zeros(self.layout.unit_size)
        offset = 0
        for t in self.layout.tensors:
            if t.axis is None:
                continue
            if t.axis == 0:
                dims = len(family.param_shapes(self.container)[t.name])
                (weight_slots if dims > 1 else bias_slots)[offset : offset + t.per_unit] = 1.0
            offset += t.per_unit
        self.register_buffer("weight_slots", weight_slots, persistent=False)
        self.register_buffer("bias_slots", bias_slots, persistent=False)
        self.shared_head = nn.Linear(cond, self.layout.shared_size) if self.layout.shared_size else None
        self.register_buffer("x_scale", torch.ones(()))
        self.register_buffer("y_scale", torch.ones(()))
        self.register_buffer("y_shift", torch.zeros(()))

    def set_data_stats(self, stats: Mapping[str, Tensor]) -> None:
        """Take σx, σy and mean y of the training split's support data (hidden-unit families only)."""
        if not self.layout.hidden or "support_x_std" not in stats:
            return
        self.x_scale.fill_(float(stats["support_x_std"].mean()))
        self.y_scale.fill_(float(stats["support_y_std"].mean()))
        self.y_shift.fill_(float(stats["support_y_mean"].mean()))

    def _to_data_units(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Standardized-units network → network on the raw data (see module doc)."""
        if not self.layout.hidden:
            return params
        out = {}
        for t in self.layout.tensors:
            p = params[t.name]
            if t.axis == 0 and p.dim() > 2:  # incoming weights [B, W, fan_in...]
                p = p / self.x_scale
            elif self.layout.fan_in(t):  # outgoing weights
                p = p * self.y_scale
            elif t.axis is None:  # output bias
                p = p * self.y_scale + self.y_shift
            out[t.name] = p
        return out

    def coordinates(self, widths: Tensor, units: int) -> Tensor:
        """``[B, units]`` coordinate of every unit slot for targets of the given widths."""
        i = torch.arange(units, dtype=torch.get_default_dtype(), device=widths.device).unsqueeze(0) + 0.5
        if self.coordinate == "relative":
            return i / widths.to(i.dtype).unsqueeze(1)
        return (i / self.index_scale).expand(widths.shape[0], -1)

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:
        if batch is None or "archs" not in batch:
            raise ValueError("the width-agnostic decoder needs the batch's archs to know each target's width")
        container = self.layout.check_container(container if container is not None else self.container)
        archs = batch["archs"]
        widths = self.layout.widths(archs)
        # only as many unit slots as the widest target of the batch needs; the rest is padding
        units = int(widths.max()) if len(widths) else 0  # one host sync per call (a data-dependent shape)
        if units > container[self.layout.index]:
            raise ValueError(f"a target is wider than the requested container {container}")
        cond = self.trunk(z)  # [B, C]
        emb = fourier_features(self.coordinates(widths, units), self.num_frequencies)
        if self.width_input:
            w = torch.log(widths.to(emb.dtype)) / math.log(self.index_scale)
            emb = torch.cat([emb, w.view(-1, 1, 1).expand(-1, units, 1)], dim=-1)
        h = self.unit_act(self.unit_cond(cond).unsqueeze(1) + self.unit_emb(emb))  # [B, W, first]
        basis = self.unit_body(h)  # [B, W, K]
        task = self.task_head(cond).view(len(cond), self.layout.unit_size, self.basis_width + 1)
        per_unit = (
            self.unit_head(basis) + torch.einsum("bwk,buk->bwu", basis, task[..., :-1]) + task[..., -1].unsqueeze(1)
        )
        if self.grid_spread is not None:
            u = self.coordinates(widths, units).unsqueeze(-1)
            direction = torch.where(u < 0.5, 1.0, -1.0)
            hinge = self.grid_spread * (2 * torch.frac(2 * u) - 1)
            per_unit = per_unit + direction * (self.weight_slots - hinge * self.bias_slots)
        per_unit = nn.functional.pad(per_unit, (0, 0, 0, container[self.layout.index] - units))
        shared = self.shared_head(cond) if self.shared_head is not None else cond.new_zeros(cond.shape[0], 0)
        params = self.layout.assemble(per_unit, shared, widths, container, self.mean_field)
        return self.family.flatten(self._to_data_units(params))
