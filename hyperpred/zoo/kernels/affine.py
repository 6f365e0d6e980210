"""Kernels for families whose output is affine in their parameters (a linear or a conv layer).

Such a target computes ``pred = W·u + b`` at every output position, where ``u`` is a row of a
*design matrix* built from the input alone (the input vector itself, or the image patches under
the kernel). With the design matrix ``U [c, F, L]`` of a chunk precomputed once:

- :class:`AffineDirectKernel` runs each step as two batched matrix products (forward, weight
  gradient) — exact for any mini-batch, at the FLOP count of the seed's loop.
- :class:`AffineGramKernel` goes further for the stock MSE on the full support set: the loss is
  quadratic, so its gradient ``2/count · (W G + b sᵀ − R)`` only involves the Gram matrix
  ``G = U Uᵀ``, the column sums ``s`` and ``R = Y Uᵀ`` (the normal equations), computed once.
  A step then costs ``O·F²`` instead of ``O·F·L`` FLOPs — for the 3→8 conv on 32 images of
  28×28, about 800× fewer. Partial Gram sums (per sample) are float32 GEMMs, their totals and
  each step's gradient are float64, because ``W G − R`` cancels as the fit improves; Adam itself
  runs in float32 as in the seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.targets.conv import ConvFamily
from hyperpred.targets.linear import LinearFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.base import Kernel, is_plain_mse, mse_counts
from hyperpred.zoo.spec import TrainRecipe


class AffineLayout(ABC):
    """How one affine family lays out its design matrix, outputs and flat parameters."""

    @abstractmethod
    def design(self, x: Tensor) -> Tensor:
        """``x [c, n, *input]`` → ``U [c, n, F, L0]`` (L0 output positions per sample)."""

    @abstractmethod
    def targets(self, y: Tensor) -> Tensor:
        """``y [c, n, *output]`` → ``[c, n, O, L0]``."""

    @abstractmethod
    def unit_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        """``[c, O]`` mask of each target's real output units."""

    def split(self, flat: Tensor, out_units: int) -> tuple[Tensor, Tensor]:
        """Flat ``[c, P]`` (weight first, then bias) → views ``W [c, O, F]``, ``b [c, O]``."""
        c, p = flat.shape
        f = (p - out_units) // out_units
        return flat[:, : out_units * f].view(c, out_units, f), flat[:, out_units * f :]


class LinearLayout(AffineLayout):
    def design(self, x: Tensor) -> Tensor:
        return x.unsqueeze(-1)

    def targets(self, y: Tensor) -> Tensor:
        return y.unsqueeze(-1)

    def unit_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        return torch.arange(container[1], device=archs.device).unsqueeze(0) < archs[:, 1:2]


class ConvLayout(AffineLayout):
    def __init__(self, kernel_size: int) -> None:
        self.k = kernel_size

    def design(self, x: Tensor) -> Tensor:
        c, n = x.shape[:2]
        cols = F.unfold(x.reshape(c * n, *x.shape[2:]), self.k)  # [c·n, cin·k·k, L0], weight's own order
        return cols.view(c, n, *cols.shape[1:])

    def targets(self, y: Tensor) -> Tensor:
        return y.flatten(3)

    def unit_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        return torch.arange(container[1], device=archs.device).unsqueeze(0) < archs[:, 1:2]


def affine_layout(family: TargetFamily, container: Sequence[int]) -> AffineLayout | None:
    """The layout of a family whose forward is affine in its parameters, or None."""
    if type(family) is LinearFamily:
        return LinearLayout()
    if type(family) is ConvFamily:
        return ConvLayout(container[2])
    return None


class _AffineKernel(Kernel):
    def __init__(self, family: TargetFamily, task: Task, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor) -> None:
        super().__init__(family, task, archs, container, x, y)
        layout = affine_layout(family, container)
        assert layout is not None, f"{type(self).__name__} does not support family {family.name}"
        self.layout = layout
        self.units = layout.unit_mask(archs, container).to(x.dtype)  # [c, O]
        self.out_units = self.units.shape[1]

    @classmethod
    def supports(cls, family: TargetFamily, task: Task, recipe: TrainRecipe, device: torch.device) -> bool:
        return is_plain_mse(task) and type(family) in (LinearFamily, ConvFamily)

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        inp = torch.Size(family.input_shape(container)).numel()
        out = torch.Size(family.output_shape(container)).numel()
        fan = inp if isinstance(family, LinearFamily) else container[0] * container[2] ** 2
        positions = out // container[1]
        return 4 * n * positions * (3 * fan + 4 * container[1]) + 4 * n * inp


class AffineDirectKernel(_AffineKernel):
    """Each step: ``pred = W U + b``, ``g = dL/dpred``, ``dW = g Uᵀ``, ``db = Σ g`` (batched GEMMs)."""

    name = "affine_direct"

    def __init__(self, family: TargetFamily, task: Task, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor) -> None:
        super().__init__(family, task, archs, container, x, y)
        u, t = self.layout.design(x), self.layout.targets(y)
        self.n, self.positions = u.shape[1], u.shape[3]
        self.u = u.permute(0, 2, 1, 3).contiguous()  # [c, F, n, L0]
        self.t = t.permute(0, 2, 1, 3).contiguous()  # [c, O, n, L0]
        self._pred: dict[int, Tensor] = {}

    def _step_data(self, rows: Tensor | None) -> tuple[Tensor, Tensor]:
        if rows is None:
            return self.u.flatten(2), self.t.flatten(2)
        idx = rows.view(rows.shape[0], 1, rows.shape[1], 1)
        u = self.u.gather(2, idx.expand(-1, self.u.shape[1], -1, self.positions))
        t = self.t.gather(2, idx.expand(-1, self.t.shape[1], -1, self.positions))
        return u.flatten(2), t.flatten(2)

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        u, t = self._step_data(rows)
        w, b = self.layout.split(params, self.out_units)
        gw, gb = self.layout.split(out, self.out_units)
        length = u.shape[2]
        if length not in self._pred:
            self._pred[length] = torch.empty(u.shape[0], self.out_units, length, dtype=u.dtype, device=u.device)
        pred = self._pred[length]
        torch.baddbmm(b.unsqueeze(2), w, u, out=pred)
        count = self.units.sum(1).clamp_min(1) * length
        g = pred.sub_(t).mul_((2.0 / count).view(-1, 1, 1)).mul_(self.units.unsqueeze(2))
        torch.bmm(g, u.transpose(1, 2), out=gw)
        torch.sum(g, 2, out=gb)

    def loss(self, params: Tensor) -> Tensor:
        u, t = self._step_data(None)
        w, b = self.layout.split(params, self.out_units)
        err = torch.baddbmm(b.unsqueeze(2), w, u).sub_(t)
        return err.square_().mul_(self.units.unsqueeze(2)).sum((1, 2)) / (self.units.sum(1).clamp_min(1) * u.shape[2])


class AffineGramKernel(_AffineKernel):
    """Full-batch MSE through the normal equations: per step ``O(O·F²)``, independent of the data size."""

    name = "affine_gram"

    def __init__(self, family: TargetFamily, task: Task, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor) -> None:
        super().__init__(family, task, archs, container, x, y)
        u, t = self.layout.design(x), self.layout.targets(y)  # [c, n, F, L0], [c, n, O, L0]
        c, n, f, positions = u.shape
        if positions == 1:  # one group per target: [c, F, n]
            u, t = u[..., 0].transpose(1, 2), t[..., 0].transpose(1, 2)
        else:  # one group per sample: [c·n, F, L0]; partial sums are short, so float32 keeps them exact enough
            u, t = u.reshape(c * n, f, positions), t.reshape(c * n, t.shape[2], positions)

        def total(part: Tensor) -> Tensor:  # sum the groups of each target in float64
            return part.double().view(c, -1, *part.shape[1:]).sum(1)

        self.length = n * positions
        self.gram = torch.empty(c, f + 1, f + 1, dtype=torch.float64, device=x.device)
        self.gram[:, :f, :f] = total(torch.bmm(u, u.transpose(1, 2)))
        sums = total(u.sum(2))
        self.gram[:, :f, f] = sums
        self.gram[:, f, :f] = sums
        self.gram[:, f, f] = self.length
        self.cross = torch.empty(c, self.out_units, f + 1, dtype=torch.float64, device=x.device)
        self.cross[:, :, :f] = total(torch.bmm(t, u.transpose(1, 2)))
        self.cross[:, :, f] = total(t.sum(2))
        self.target_sq = total(t.square().sum(2))  # [c, O]
        units = self.units.double()
        self.scale = (2.0 / (units.sum(1).clamp_min(1) * self.length)).view(-1, 1, 1) * units.unsqueeze(2)
        self._w = torch.empty(c, self.out_units, f + 1, dtype=torch.float64, device=x.device)
        self._g = torch.empty_like(self._w)

    @classmethod
    def supports(cls, family: TargetFamily, task: Task, recipe: TrainRecipe, device: torch.device) -> bool:
        return super().supports(family, task, recipe, device) and recipe.batch_size is None

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        if rows is not None:
            raise ValueError("affine_gram trains on the full support set only")
        w, b = self.layout.split(params, self.out_units)
        f = w.shape[2]
        self._w[:, :, :f].copy_(w)
        self._w[:, :, f].copy_(b)
        torch.bmm(self._w, self.gram, out=self._g)
        self._g.sub_(self.cross).mul_(self.scale)
        gw, gb = self.layout.split(out, self.out_units)
        gw.copy_(self._g[:, :, :f])
        gb.copy_(self._g[:, :, f])

    def loss(self, params: Tensor) -> Tensor:
        """``Σ_o (w_o G w_oᵀ − 2 w_o·r_o + t_o·t_o) / count`` in float64, where cancellation is harmless."""
        w, b = self.layout.split(params, self.out_units)
        wa = torch.cat([w.double(), b.double().unsqueeze(2)], 2)
        per_unit = (torch.bmm(wa, self.gram) * wa).sum(2) - 2 * (wa * self.cross).sum(2) + self.target_sq
        units = self.units.double()
        return ((per_unit * units).sum(1) / (units.sum(1).clamp_min(1) * self.length)).clamp_min(0).to(params.dtype)
