"""Which parameter entries belong to which unit, read off the family's shapes.

A family's *width field* (hidden units of the MLP, output channels of a conv or linear layer) is
the architecture number the decoder generates units for. Comparing ``param_shapes`` at width H
and H+1 shows, for every named tensor, the axis that indexes units (or none: the tensor is shared,
like the MLP's output bias). No family needs to declare anything.

The same comparison says whether units are *hidden*: when the input and output shapes do not
change with the width, permuting units leaves the function unchanged (the MLP's hidden layer);
when they do, a unit is a specific output (a conv's output channel) and its index means something.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.targets.base import Params, TargetFamily, unit_mask


@dataclass(frozen=True)
class UnitTensor:
    """One named parameter tensor: its unit axis (None: shared) and the values per unit."""

    name: str
    axis: int | None
    per_unit: int  # values of this tensor that one unit owns (or all of them when shared)


class UnitLayout:
    """The unit structure of a family along one width field, valid at any width."""

    def __init__(self, family: TargetFamily, container: Sequence[int], width_field: str | None = None) -> None:
        fields = family.arch_fields
        if width_field is None:
            free = [f for f in fields if f not in family.fixed_fields]
            if len(free) != 1:
                raise ConfigError(
                    f"family '{family.name}' has the free architecture fields {free}: set predictor.width_field to "
                    "one of them"
                )
            width_field = free[0]
        if width_field not in fields:
            raise ConfigError(
                f"predictor.width_field={width_field!r} is not an architecture field of family '{family.name}' "
                f"{list(fields)}"
            )
        if width_field in family.fixed_fields:
            raise ConfigError(
                f"predictor.width_field={width_field!r} is fixed for family '{family.name}': it cannot vary per target"
            )
        self.family = family
        self.width_field = width_field
        self.index = fields.index(width_field)
        self.container = tuple(int(c) for c in container)
        base, bigger = list(self.container), list(self.container)
        bigger[self.index] += 1
        s0, s1 = family.param_shapes(base), family.param_shapes(bigger)
        tensors = []
        for name, shape in s0.items():
            axes = [a for a, (p, q) in enumerate(zip(shape, s1[name])) if p != q]
            if len(axes) > 1:
                raise ConfigError(
                    f"family '{family.name}': parameter '{name}' grows along several axes with {width_field}; the "
                    "width-agnostic decoder needs one"
                )
            axis = axes[0] if axes else None
            per_unit = math.prod(shape) // shape[axis] if axis is not None else math.prod(shape)
            tensors.append(UnitTensor(name, axis, per_unit))
        self.tensors = tuple(tensors)
        self.hidden = family.input_shape(base) == family.input_shape(bigger) and family.output_shape(
            base
        ) == family.output_shape(bigger)
        self.unit_size = sum(t.per_unit for t in tensors if t.axis is not None)
        self.shared_size = sum(t.per_unit for t in tensors if t.axis is None)

    def check_container(self, container: Sequence[int]) -> tuple[int, ...]:
        """``container`` must equal the training one in every field but the width."""
        container = tuple(int(c) for c in container)
        for i, (field, have, want) in enumerate(zip(self.family.arch_fields, container, self.container)):
            if i != self.index and have != want:
                raise ConfigError(
                    f"this predictor generates '{self.width_field}' at any size, but '{field}' must stay {want}; got "
                    f"{have}"
                )
        return container

    def widths(self, archs: Tensor) -> Tensor:
        return archs[:, self.index]

    def fan_in(self, t: UnitTensor) -> bool:
        """True when the unit axis is an input axis of the next layer (PyTorch's ``[out, in, ...]`` layout)."""
        return t.axis is not None and t.axis > 0

    def assemble(
        self, per_unit: Tensor, shared: Tensor, widths: Tensor, container: Sequence[int], mean_field: bool
    ) -> Params:
        """``per_unit [B, W, unit_size]`` and ``shared [B, shared_size]`` → padded params at ``container``.

        Units at or beyond each target's width are zeroed (padding). With ``mean_field``, the
        tensors that *read* the units (fan-in axis) are divided by the width, so that a sum over
        units is a mean and the function stays put as the width grows.
        """
        shapes = self.family.param_shapes(container)
        b, w = per_unit.shape[:2]
        alive = unit_mask(widths, w).to(per_unit.dtype)  # [B, W]
        scale = widths.to(per_unit.dtype).reciprocal()
        out: Params = {}
        u_off = s_off = 0
        for t in self.tensors:
            shape = shapes[t.name]
            if t.axis is None:
                out[t.name] = shared[:, s_off : s_off + t.per_unit].reshape(b, *shape)
                s_off += t.per_unit
                continue
            other = tuple(s for a, s in enumerate(shape) if a != t.axis)
            v = (per_unit[:, :, u_off : u_off + t.per_unit] * alive.unsqueeze(2)).reshape(b, w, *other)
            if mean_field and self.fan_in(t):
                v = v * scale.view(b, *([1] * (v.dim() - 1)))
            out[t.name] = v.movedim(1, 1 + t.axis)
            u_off += t.per_unit
        return out

    def split(self, params: Params) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`assemble` without scaling: ``([B, W, unit_size], [B, shared_size])``."""
        units, shared = [], []
        for t in self.tensors:
            p = params[t.name]
            if t.axis is None:
                shared.append(p.flatten(1))
            else:
                v = p.movedim(1 + t.axis, 1)
                units.append(v.reshape(v.shape[0], v.shape[1], -1))
        first = next(iter(params.values()))
        b, like = first.shape[0], {"dtype": first.dtype, "device": first.device}
        return (torch.cat(units, dim=2) if units else torch.zeros(b, 0, 0, **like)), (
            torch.cat(shared, dim=1) if shared else torch.zeros(b, 0, **like)
        )
