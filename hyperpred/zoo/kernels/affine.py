"""Kernels for families whose output is affine in their parameters (a linear or a conv layer).

Such a target computes ``pred = W·u + b`` at every output position, where ``u`` is a row of a
*design matrix* built from the input alone (the input vector itself, or the image patches under
the kernel). Appending a constant 1 to ``u`` makes the bias one more weight: ``pred = Wa·ua``.
With the design matrix of a chunk built once:

- :class:`AffineGramKernel` (the stock MSE): the loss is quadratic in ``Wa``, so its gradient
  ``2/count · (Wa G − R)`` only needs the Gram matrix ``G = Σ ua uaᵀ`` and ``R = Σ y uaᵀ``
  over the step's samples (the normal equations). Per-sample Grams are computed once; a step
  then sums those of its mini-batch (or uses their total) and costs ``O·F²`` FLOPs instead of
  ``O·F·L`` — for the 3→8 conv on 32 images of 28×28, about 800× fewer. Per-sample Grams are
  float32 GEMMs over one image's positions; totals and each step's gradient are float64,
  because ``Wa G − R`` cancels as the fit improves. Adam itself runs in float32 as in the seed.
- :class:`AffineDirectKernel` (any loss): per step ``pred = Wa Ua`` and ``[dW | db] = g Uaᵀ``,
  two batched GEMMs at the seed's FLOP count, in chunks small enough that a chunk's design
  matrix stays in cache between the two products.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily
from hyperpred.targets.conv import ConvFamily
from hyperpred.targets.linear import LinearFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.base import Kernel, is_plain_mse, output_grad_
from hyperpred.zoo.spec import TrainRecipe


class AffineLayout(ABC):
    """How one affine family lays out its design matrix, outputs and flat parameters."""

    @abstractmethod
    def design(self, x: Tensor) -> Tensor:
        """``x [c, n, *input]`` → ``U [c, n, F, L0]`` (L0 output positions per sample)."""

    @abstractmethod
    def position_shape(self, container: Sequence[int]) -> tuple[int, ...]:
        """Shape of the output positions of one sample (``()`` for a vector output)."""

    def targets(self, y: Tensor) -> Tensor:
        """``y [c, n, O, *positions]`` → ``[c, n, O, L0]``."""
        return y.reshape(*y.shape[:3], -1)

    def unit_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        """``[c, O]`` mask of each target's real output units (the second arch field, for both)."""
        return torch.arange(container[1], device=archs.device).unsqueeze(0) < archs[:, 1:2]

    def split(self, flat: Tensor, out_units: int) -> tuple[Tensor, Tensor]:
        """Flat ``[c, P]`` (weight first, then bias) → views ``W [c, O, F]``, ``b [c, O]``."""
        c, p = flat.shape
        f = (p - out_units) // out_units
        return flat[:, : out_units * f].view(c, out_units, f), flat[:, out_units * f :]


class LinearLayout(AffineLayout):
    def design(self, x: Tensor) -> Tensor:
        return x.unsqueeze(-1)

    def position_shape(self, container: Sequence[int]) -> tuple[int, ...]:
        return ()


class ConvLayout(AffineLayout):
    def __init__(self, family: ConvFamily, kernel_size: int) -> None:
        self.family, self.k = family, kernel_size

    def design(self, x: Tensor) -> Tensor:
        """Image patches in the weight's own order ``(cin, ki, kj)``: ``F.unfold``'s layout, built
        from a strided view with one copy (on CPU about 8× faster than ``F.unfold``)."""
        c, n, cin = x.shape[:3]
        k = self.k
        patches = x.unfold(3, k, 1).unfold(4, k, 1)  # [c, n, cin, H', W', k, k] (a view)
        side_h, side_w = patches.shape[3:5]
        return patches.permute(0, 1, 2, 5, 6, 3, 4).reshape(c, n, cin * k * k, side_h * side_w)

    def position_shape(self, container: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.family.output_shape(container)[1:])


def affine_layout(family: TargetFamily, container: Sequence[int]) -> AffineLayout | None:
    """The layout of a family whose forward is affine in its parameters, or None."""
    if type(family) is LinearFamily:
        return LinearLayout()
    if type(family) is ConvFamily:
        return ConvLayout(family, container[2])
    return None


class _AffineKernel(Kernel):
    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        archs: Tensor,
        container: Sequence[int],
        x: Tensor,
        y: Tensor,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(family, task, archs, container, x, y, batch_size)
        layout = affine_layout(family, container)
        if layout is None:
            raise TypeError(f"{type(self).__name__} does not support family {family.name}")
        self.layout = layout
        self.units = layout.unit_mask(archs, container).to(x.dtype)  # [c, O]
        self.out_units = self.units.shape[1]

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        return type(family) in (LinearFamily, ConvFamily)

    @classmethod
    def _sizes(cls, family: TargetFamily, container: Sequence[int]) -> tuple[int, int, int, int]:
        """(input size, features F, output units O, positions L0) of one sample."""
        inp = torch.Size(family.input_shape(container)).numel()
        fan = inp if isinstance(family, LinearFamily) else container[0] * container[2] ** 2
        positions = torch.Size(family.output_shape(container)).numel() // container[1]
        return inp, fan, container[1], positions


class AffineDirectKernel(_AffineKernel):
    """Each step: ``pred = Wa Ua``, ``g = dL/dpred``, ``[dW | db] = g Uaᵀ`` — two batched GEMMs.

    Both products are long and thin (``O × (F+1)`` against ``L`` columns), so they are bound by
    reading ``Ua``: a chunk is sized to keep its ``Ua`` in cache (on the reference CPU one conv
    target per chunk ran the GEMMs 2–3× faster than eight). Any task loss works: the stock MSE in
    closed form, others by autograd on the outputs.
    """

    name = "affine_direct"
    #: Each step streams the design matrix twice: keep a chunk's within a (shared) L3 cache.
    chunk_bytes = 8 * 2**20

    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        archs: Tensor,
        container: Sequence[int],
        x: Tensor,
        y: Tensor,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(family, task, archs, container, x, y, batch_size)
        u = self.layout.design(x)  # [c, n, F, L0]
        c, n, f, positions = u.shape
        self.features, self.positions, self.pos_shape = f, positions, self.layout.position_shape(container)
        self.ua = torch.ones(c, f + 1, n, positions, dtype=x.dtype, device=x.device)
        self.ua[:, :f] = u.permute(0, 2, 1, 3)
        self.mse = is_plain_mse(task)
        self.t = self.layout.targets(y).permute(0, 2, 1, 3).contiguous() if self.mse else None  # [c, O, n, L0]
        self.weights = torch.empty(c, self.out_units, f + 1, dtype=x.dtype, device=x.device)
        self.grads = torch.empty_like(self.weights)
        self._pred: dict[int, Tensor] = {}
        self.unit_scale = self.units * (2.0 / self.units.sum(1, keepdim=True).clamp_min(1))  # [c, O]

    def _design(self, rows: Tensor | None) -> Tensor:
        c, fa = self.ua.shape[0], self.features + 1
        if rows is None:
            return self.ua.view(c, fa, -1)
        m = rows.shape[1]
        return self.ua.gather(2, rows.view(c, 1, m, 1).expand(-1, fa, -1, self.positions)).view(c, fa, -1)

    def _targets(self, rows: Tensor | None) -> Tensor:
        c = self.t.shape[0]
        if rows is None:
            return self.t.view(c, self.out_units, -1)
        m = rows.shape[1]
        return self.t.gather(2, rows.view(c, 1, m, 1).expand(-1, self.out_units, -1, self.positions)).view(
            c, self.out_units, -1
        )

    def _forward(self, params: Tensor, ua: Tensor, targets: Tensor | None = None) -> Tensor:
        """``Wa Ua`` — or, given the targets, the residual ``Wa Ua − T`` in the same GEMM."""
        w, b = self.layout.split(params, self.out_units)
        self.weights[:, :, : self.features].copy_(w)
        self.weights[:, :, self.features].copy_(b)
        length = ua.shape[2]
        if length not in self._pred:
            self._pred[length] = torch.empty(ua.shape[0], self.out_units, length, dtype=ua.dtype, device=ua.device)
        if targets is None:
            return torch.bmm(self.weights, ua, out=self._pred[length])
        return torch.baddbmm(targets, self.weights, ua, beta=-1, out=self._pred[length])

    def _as_outputs(self, pred: Tensor) -> Tensor:
        """``[c, O, m·L0]`` → the family's output layout ``[c, m, O, *positions]`` (a view)."""
        c = pred.shape[0]
        return pred.view(c, self.out_units, -1, *self.pos_shape).movedim(1, 2)

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        ua = self._design(rows)
        if self.mse:
            # masked MSE: dL/dWa = (2·mask / (units·L)) ⊙ (Wa Ua − T) Uaᵀ. The per-unit scale is
            # applied to the small product, so the big residual is written once and read once.
            residual = self._forward(params, ua, self._targets(rows))
            torch.bmm(residual, ua.transpose(1, 2), out=self.grads)
            self.grads.mul_((self.unit_scale / ua.shape[2]).unsqueeze(2))
        else:
            _, y = self.batch(rows)
            pred = self._forward(params, ua)
            g = output_grad_(self.task, self._as_outputs(pred), y, self.out_mask).movedim(2, 1).reshape(pred.shape)
            torch.bmm(g, ua.transpose(1, 2), out=self.grads)
        gw, gb = self.layout.split(out, self.out_units)
        gw.copy_(self.grads[:, :, : self.features])
        gb.copy_(self.grads[:, :, self.features])

    def loss(self, params: Tensor) -> Tensor:
        ua = self._design(None)
        if not self.mse:
            return self.task.loss(self._as_outputs(self._forward(params, ua)), self.y, self.out_mask)
        err = self._forward(params, ua, self._targets(None))
        return err.square_().mul_(self.units.unsqueeze(2)).sum((1, 2)) / (self.units.sum(1).clamp_min(1) * ua.shape[2])

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        inp, fan, out, positions = cls._sizes(family, container)
        return 4 * n * positions * (fan + 1 + 3 * out) + 4 * n * inp


class AffineGramKernel(_AffineKernel):
    """Stock MSE through the normal equations: a step costs ``O(O·F²)``, whatever the data size."""

    name = "affine_gram"

    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        archs: Tensor,
        container: Sequence[int],
        x: Tensor,
        y: Tensor,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(family, task, archs, container, x, y, batch_size)
        _, n = x.shape[:2]
        _, f, out, positions = self._sizes(family, container)
        self.features, self.positions = f, positions
        per_sample = batch_size is not None  # mini-batches pick per-sample Grams; full batch needs only totals
        lead = (x.shape[0], n) if per_sample else (x.shape[0],)
        opts = {"dtype": torch.float64, "device": x.device}
        self.gram = torch.empty(*lead, f + 1, f + 1, **opts)
        self.cross = torch.empty(*lead, out, f + 1, **opts)
        self.target_sq = torch.empty(*lead, out, **opts)
        # The design matrices are only needed here: build them a slice of targets at a time.
        step = max(1, self.design_bytes // max(1, 4 * n * positions * (f + out)))
        for start in range(0, x.shape[0], step):
            self._statistics_of(slice(start, start + step), x, y, per_sample)
        self.units64 = self.units.double()
        self.unit_scale = self.units64 * (2.0 / self.units64.sum(1, keepdim=True).clamp_min(1))  # [c, O]
        self._w = torch.empty(x.shape[0], out, f + 1, **opts)
        self._g = torch.empty_like(self._w)

    #: Transient memory for design matrices while the Gram statistics are computed.
    design_bytes = 32 * 2**20

    def _statistics_of(self, rows: slice, x: Tensor, y: Tensor, per_sample: bool) -> None:
        """Fill the Gram statistics of the targets ``rows``."""
        u, t = self.layout.design(x[rows]), self.layout.targets(y[rows])  # [c, n, F, L0], [c, n, O, L0]
        c, n, f, positions = u.shape
        if positions == 1 and not per_sample:  # one group per target, [c, F, n]: one GEMM sums every sample
            u, t = u[..., 0].transpose(1, 2), t[..., 0].transpose(1, 2)
        else:  # one group per sample, [c·n, F, L0]: partial sums are short, so float32 keeps them accurate
            u, t = u.reshape(c * n, f, positions), t.reshape(c * n, t.shape[2], positions)
        groups = u.shape[0] // c

        def combine(part: Tensor) -> Tensor:  # [c·groups, ...] → float64 [c, n, ...] per sample, or [c, ...] totals
            part = part.double().view(c, groups, *part.shape[1:])
            return part if per_sample else part.sum(1)

        gram, cross = self.gram[rows], self.cross[rows]
        gram[..., :f, :f] = combine(torch.bmm(u, u.transpose(1, 2)))
        sums = combine(u.sum(2))
        gram[..., :f, f] = sums
        gram[..., f, :f] = sums
        gram[..., f, f] = positions if per_sample else n * positions
        cross[..., :f] = combine(torch.bmm(t, u.transpose(1, 2)))
        cross[..., f] = combine(t.sum(2))
        self.target_sq[rows] = combine(t.square().sum(2))

    @classmethod
    def supports(
        cls,
        family: TargetFamily,
        task: Task,
        recipe: TrainRecipe,
        device: torch.device,
        container: Sequence[int] | None = None,
    ) -> bool:
        return super().supports(family, task, recipe, device, container) and is_plain_mse(task)

    @classmethod
    def bytes_per_target(cls, family: TargetFamily, container: Sequence[int], n: int) -> int:
        _, fan, out, _ = cls._sizes(family, container)
        # float64 statistics per sample (mini-batches) or in total; the data itself is the caller's
        return 8 * n * ((fan + 1) * (fan + 1 + out) + out) + 32 * out * (fan + 1)

    def _statistics(self, rows: Tensor | None) -> tuple[Tensor, Tensor, int]:
        """Gram, cross term and sample count of this step's samples."""
        if self.batch_size is None:
            return self.gram, self.cross, self.x.shape[1]
        if rows is None:
            return self.gram.sum(1), self.cross.sum(1), self.x.shape[1]
        pick = lambda a: a.gather(1, rows.view(*rows.shape, 1, 1).expand(-1, -1, *a.shape[2:])).sum(1)  # noqa: E731
        return pick(self.gram), pick(self.cross), rows.shape[1]

    def _weights(self, params: Tensor) -> Tensor:
        w, b = self.layout.split(params, self.out_units)
        self._w[:, :, : self.features].copy_(w)
        self._w[:, :, self.features].copy_(b)
        return self._w

    def grad(self, params: Tensor, out: Tensor, rows: Tensor | None = None) -> None:
        gram, cross, samples = self._statistics(rows)
        torch.bmm(self._weights(params), gram, out=self._g)
        self._g.sub_(cross).mul_((self.unit_scale / (samples * self.positions)).unsqueeze(2))
        gw, gb = self.layout.split(out, self.out_units)
        gw.copy_(self._g[:, :, : self.features])
        gb.copy_(self._g[:, :, self.features])

    def loss(self, params: Tensor) -> Tensor:
        """``Σ_o (w_o G w_oᵀ − 2 w_o·r_o + t_o·t_o) / count`` over the whole support set, in float64."""
        gram, cross, samples = self._statistics(None)
        target_sq = self.target_sq if self.batch_size is None else self.target_sq.sum(1)
        wa = self._weights(params)
        per_unit = (torch.bmm(wa, gram) * wa).sum(2) - 2 * (wa * cross).sum(2) + target_sq
        count = self.units64.sum(1).clamp_min(1) * samples * self.positions
        return ((per_unit * self.units64).sum(1) / count).clamp_min(0).to(params.dtype)
