"""A decoder that generates every weight of every layer from the coordinates of the units it connects.

The width-agnostic decoder generates the units of one width field; a network of any depth has a
weight tensor per layer, each connecting a variable number of input units to a variable number of
output units. Here one shared network ``g`` generates each entry of every weight tensor:

    W_l[j, i, k] = g(cond, e_l, φ(u_in_i), φ(u_out_j), κ_k) / fan_in_l
    b_l[j]       = h(cond, e_l, φ(u_out_j))

with ``e_l`` a learned embedding of the tensor, ``u_in_i = (i + 0.5) / fan_in`` and
``u_out_j = (j + 0.5) / fan_out`` the relative positions of the units (the target's own sizes, not
the container's), ``φ`` their Fourier features and ``κ`` the kernel offset of a conv. The scaling
by the target's real fan-in (mean field) makes each pre-activation an average over the input units,
a Riemann sum that converges as a layer widens, so one checkpoint serves any width of every layer,
also widths beyond the training container. ``g`` runs on the whole grid (target, out, in, kernel)
of a tensor at once; the first layer of ``g`` is split per input, so the conditioning is projected
once per target and each coordinate once per unit. As in the width-agnostic decoder the last step
is bilinear (``M(cond, e_l) · basis + m(cond, e_l)``, zero at the start): a task-dependent read-out
of a learned basis of the coordinates.

Regression targets are decoded in standardized data units (first weight ÷ σx, last weight × σy,
the biases after it × σy + mean y) from the training split's support moments; ``grid_spread``
starts the first linear layer as two grids of hinges over ±spread std of x (see
:mod:`hyperpred.predictors.width_agnostic`, whose template this is). Entries beyond each target's
architecture are exactly zero in the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hyperpred.errors import ConfigError
from hyperpred.predictors.base import ACTIVATIONS, Predictor, mlp
from hyperpred.predictors.width_agnostic import fourier_features
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily


def _coords(size: int, real: Tensor) -> Tensor:
    """``[B, size]`` relative coordinates ``(i + 0.5) / real_b`` of the first ``size`` slots."""
    i = torch.arange(size, dtype=torch.get_default_dtype(), device=real.device) + 0.5
    return i / real.to(i.dtype).clamp_min(1).unsqueeze(1)


@register("predictor")
class LayerwiseDecoder(Predictor):
    """Every weight tensor from ``(cond, layer embedding, unit coordinates)``: any width of every layer."""

    output_space = "raw"
    width_agnostic = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        family: TargetFamily,
        container: Sequence[int],
        hidden: Sequence[int] = (256, 256),
        unit_hidden: Sequence[int] = (64, 64),
        embed_dim: int = 16,
        num_frequencies: int = 4,
        activation: str = "gelu",
        data_units: bool = True,
        grid_spread: float | None = 2.0,
        init_gain: float = 4.0,
    ) -> None:
        super().__init__()
        if not unit_hidden:
            raise ConfigError("predictor.unit_hidden must list at least one layer width")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"predictor.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.family = family
        self.container = tuple(int(c) for c in container)
        if family.num_params(self.container) != out_dim:
            raise ConfigError(f"predictor.out_dim={out_dim} does not match family '{family.name}' at {self.container}")
        shapes = family.param_shapes(self.container)
        self.names = list(shapes)
        self.kernel_dims = {n: len(s) - 2 for n, s in shapes.items() if len(s) >= 2}
        if not self.kernel_dims:
            raise ConfigError(f"predictor=layerwise: family '{family.name}' has no weight tensor (2 or more dims)")
        weights = [n for n in self.names if n in self.kernel_dims]
        self.first, self.last = weights[0], weights[-1]
        self.after_last = set(self.names[self.names.index(self.last) + 1 :])
        self.num_frequencies = num_frequencies
        self.data_units = bool(data_units)
        self.grid_spread = grid_spread if len(shapes[self.first]) == 2 else None
        self.trunk, cond = mlp(in_dim, hidden, activation)
        self.embedding = nn.Parameter(torch.randn(len(self.names), embed_dim) * 0.1)
        # per-tensor learned gain: a freshly built g is O(0.1), and depth compounds it (an O(1e-3) output)
        self.log_gain = nn.Parameter(torch.full((len(self.names),), math.log(init_gain)))
        ff = 1 + 2 * num_frequencies
        first = int(unit_hidden[0])
        self.act = ACTIVATIONS[activation]()
        self.parts = nn.ModuleDict()
        for kind, has_in in (("weight", True), ("vector", False)):
            part = nn.Module()
            part.cond = nn.Linear(cond + embed_dim, first)
            part.out_coord = nn.Linear(ff, first, bias=False)
            if has_in:
                part.in_coord = nn.Linear(ff, first, bias=False)
                part.kernel = nn.Linear(2, first, bias=False)  # offsets along (kh, kw), zero for a linear layer
            part.body, width = mlp(first, unit_hidden[1:], activation)
            part.head = nn.Linear(width, 1)
            part.task = nn.Linear(cond + embed_dim, width + 1)  # M(cond, e) and m(cond, e): bilinear read-out
            nn.init.zeros_(part.task.weight)
            nn.init.zeros_(part.task.bias)
            self.parts[kind] = part
        self.register_buffer("x_scale", torch.ones(()))
        self.register_buffer("y_scale", torch.ones(()))
        self.register_buffer("y_shift", torch.zeros(()))

    def set_data_stats(self, stats: Mapping[str, Tensor]) -> None:
        """Take σx, σy and mean y of the training split's support data (with ``data_units``)."""
        if not self.data_units or "support_x_std" not in stats:
            return
        self.x_scale.fill_(float(stats["support_x_std"].mean()))
        self.y_scale.fill_(float(stats["support_y_std"].mean()))
        self.y_shift.fill_(float(stats["support_y_mean"].mean()))

    def _real_shapes(self, archs: Tensor) -> dict[str, Tensor]:
        """``{name: [B, dims]}`` each target's own tensor shape (one ``param_shapes`` per distinct arch)."""
        uniq, inverse = torch.unique(archs.cpu(), dim=0, return_inverse=True)
        rows = [self.family.param_shapes(tuple(int(v) for v in u)) for u in uniq]
        return {n: torch.tensor([r[n] for r in rows], dtype=torch.long)[inverse].to(archs.device) for n in self.names}

    def _generate(self, kind: str, ctx: Tensor, pre: Tensor) -> Tensor:
        """The shared network's value on a grid whose first-layer pre-activation is ``pre [B, ..., F]``."""
        part = self.parts[kind]
        basis = part.body(self.act(pre))  # [B, ..., K]
        task = part.task(ctx)  # [B, K + 1]
        view = (ctx.shape[0], *([1] * (basis.dim() - 2)), -1)
        bilinear = (basis * task[:, :-1].view(view)).sum(-1) + task[:, -1].view(view[:-1])
        return part.head(basis).squeeze(-1) + bilinear

    def _weight(self, cond: Tensor, e: Tensor, shape: Sequence[int], real: Tensor) -> Tensor:
        """``[B, *shape]`` one weight tensor: the grid (out, in, kernel...), scaled by 1/fan_in, masked."""
        part = self.parts["weight"]
        out, inp, kernel = shape[0], shape[1], tuple(shape[2:])
        ctx = torch.cat([cond, e.expand(len(cond), -1)], dim=1)
        u_out, u_in = _coords(out, real[:, 0]), _coords(inp, real[:, 1])
        k_dims = len(kernel)
        offsets = torch.zeros(*kernel, 2, device=cond.device)
        for d, size in enumerate(kernel[:2]):  # centred offsets in (-0.5, 0.5) along each kernel axis
            axis = (torch.arange(size, device=cond.device) + 0.5) / size - 0.5
            offsets[..., d] = axis.view(*([1] * d), size, *([1] * (k_dims - d - 1)))
        grid = (
            part.cond(ctx).view(len(cond), 1, 1, *([1] * k_dims), -1)
            + part.out_coord(fourier_features(u_out, self.num_frequencies)).view(len(cond), out, 1, *([1] * k_dims), -1)
            + part.in_coord(fourier_features(u_in, self.num_frequencies)).view(len(cond), 1, inp, *([1] * k_dims), -1)
            + part.kernel(offsets).view(1, 1, 1, *kernel, -1)
        )
        w = self._generate("weight", ctx, grid)  # [B, out, in, *kernel]
        fan_in = real[:, 1:].prod(dim=1).to(w.dtype)
        return w / fan_in.view(-1, *([1] * (w.dim() - 1)))

    def _vector(self, cond: Tensor, e: Tensor, size: int, real: Tensor) -> Tensor:
        """``[B, size]`` a bias (or a per-unit scale) from ``(cond, e, out coordinate)``."""
        part = self.parts["vector"]
        ctx = torch.cat([cond, e.expand(len(cond), -1)], dim=1)
        u = fourier_features(_coords(size, real[:, 0]), self.num_frequencies)
        return self._generate("vector", ctx, part.cond(ctx).unsqueeze(1) + part.out_coord(u))

    def _template(self, name: str, out: int, real: Tensor) -> Tensor:
        """The first linear layer's starting point: hinges facing right (first half) and left (second half)."""
        u = _coords(out, real[:, 0])
        direction = torch.where(u < 0.5, 1.0, -1.0)
        if name == self.first:
            return direction.unsqueeze(-1)  # [B, out, 1]: each weight ±1/fan_in, so the unit reads ±mean(x)
        return -direction * self.grid_spread * (2 * torch.frac(2 * u) - 1)

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:
        if batch is None or "archs" not in batch:
            raise ValueError("the layerwise decoder needs the batch's archs to know each target's widths")
        container = tuple(int(c) for c in (container if container is not None else self.container))
        archs = batch["archs"]
        shapes = self.family.param_shapes(container)
        if list(shapes) != self.names:
            raise ValueError(
                f"container {container} has tensors {list(shapes)}, the decoder was built for {self.names}"
            )
        real = self._real_shapes(archs)
        masks = self.family.param_masks(archs, container)
        cond = self.trunk(z)
        params: dict[str, Tensor] = {}
        bias_of_first = self.names[self.names.index(self.first) + 1] if self.grid_spread is not None else None
        for idx, name in enumerate(self.names):  # a loop over the few tensors, vectorized over targets and units
            shape, e, gain = shapes[name], self.embedding[idx], self.log_gain[idx].exp()
            if name in self.kernel_dims:
                p = gain * self._weight(cond, e, shape, real[name])
                if name == self.first and self.grid_spread is not None:
                    p = p + self._template(name, shape[0], real[name]) / real[name][:, 1].view(-1, 1, 1)
            else:
                p = gain * self._vector(cond, e, shape[0], real[name])
                if name == bias_of_first and len(shape) == 1:
                    p = p + self._template(name, shape[0], real[name])
            if self.data_units and name == self.first:
                p = p / self.x_scale
            elif self.data_units and name == self.last:
                p = p * self.y_scale
            elif self.data_units and name in self.after_last:
                p = p * self.y_scale + self.y_shift
            params[name] = torch.where(masks[name].to(p.device), p, torch.zeros((), dtype=p.dtype, device=p.device))
        return self.family.flatten(params)
