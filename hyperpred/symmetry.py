"""Canonical forms of targets under the permutation symmetry of hidden units.

Swapping two hidden units (their incoming weights and bias, and their outgoing weights) leaves a
network's function unchanged, so independently trained targets list "the same" units in arbitrary
orders and a weight-space MSE punishes a correct prediction. Sorting every target's real units by
a key that moves with the unit removes that freedom before the weight loss:

* ``hinge``: for a 1-input ReLU layer, unit i is a hinge at ``x = -b_i / w_i`` (DESIGN.md);
* ``incoming_norm``: the norm of the unit's incoming weights and bias;
* ``outgoing``: the sum of the unit's outgoing weights.

Padded units (beyond a target's width) stay last. Only *hidden* units have this symmetry: a conv's
output channels are specific outputs, so canonicalizing them is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.targets.base import Params, TargetFamily, unit_mask
from hyperpred.units import UnitLayout, UnitTensor

KEYS = ("hinge", "incoming_norm", "outgoing")


def _incoming(layout: UnitLayout) -> list[UnitTensor]:
    return [t for t in layout.tensors if t.axis == 0]


def unit_key(layout: UnitLayout, params: Params, key: str) -> Tensor:
    """``[B, W]`` sort key of every unit slot."""
    units = {}
    for t in layout.tensors:
        if t.axis is not None:
            v = params[t.name].movedim(1 + t.axis, 1)
            units[t.name] = v.reshape(v.shape[0], v.shape[1], -1)
    incoming = _incoming(layout)
    if key == "hinge":
        weights = [t for t in incoming if params[t.name].dim() > 2]
        biases = [t for t in incoming if params[t.name].dim() == 2]
        if len(weights) != 1 or len(biases) != 1 or weights[0].per_unit != 1:
            raise ConfigError(
                "symmetry key 'hinge' needs one scalar incoming weight and one bias per unit (family "
                f"'{layout.family.name}'); use incoming_norm or outgoing"
            )
        w = units[weights[0].name][..., 0]
        b = units[biases[0].name][..., 0]
        tiny = torch.finfo(w.dtype).tiny ** 0.5
        w = torch.where(w.abs() < tiny, torch.full_like(w, tiny), w)
        return torch.nan_to_num(-b / w)
    if key == "incoming_norm":
        return torch.cat([units[t.name] for t in incoming], dim=2).norm(dim=2)
    if key == "outgoing":
        outgoing = [t for t in layout.tensors if layout.fan_in(t)]
        if not outgoing:
            raise ConfigError(f"symmetry key 'outgoing': family '{layout.family.name}' has no tensor reading its units")
        return torch.cat([units[t.name] for t in outgoing], dim=2).sum(2)
    raise ConfigError(f"loss.canonicalize must be null or one of {list(KEYS)}, got {key!r}")


def permute_units(layout: UnitLayout, params: Params, perm: Tensor) -> Params:
    """Reorder every unit tensor by ``perm [B, W]`` (unit slot j takes unit ``perm[:, j]``)."""
    out = dict(params)
    for t in layout.tensors:
        if t.axis is None:
            continue
        p = params[t.name]
        ax = 1 + t.axis
        index = perm.view(perm.shape[0], *([1] * (ax - 1)), perm.shape[1], *([1] * (p.dim() - ax - 1)))
        out[t.name] = torch.gather(p, ax, index.expand_as(p))
    return out


def canonical_permutation(layout: UnitLayout, params: Params, archs: Tensor, key: str) -> Tensor:
    """``[B, W]``: real units sorted by ``key`` (stable), padded units after them in place."""
    k = unit_key(layout, params, key)
    alive = unit_mask(layout.widths(archs), k.shape[1])
    k = torch.where(alive, k, torch.full_like(k, float("inf")))
    return torch.argsort(k, dim=1, stable=True)


def canonicalize(
    family: TargetFamily,
    params: Params,
    archs: Tensor,
    container: Sequence[int],
    key: str = "hinge",
    width_field: str | None = None,
) -> Params:
    """The canonical form of a batch of (padded) targets: same functions, units sorted by ``key``."""
    layout = UnitLayout(family, container, width_field)
    if not layout.hidden:
        raise ConfigError(
            f"family '{family.name}': its '{layout.width_field}' units are outputs, not hidden units; they have no "
            "permutation symmetry to canonicalize"
        )
    return permute_units(layout, params, canonical_permutation(layout, params, archs, key))


def canonicalize_flat(
    family: TargetFamily, flat: Tensor, archs: Tensor, container: Sequence[int], key: str = "hinge"
) -> Tensor:
    """:func:`canonicalize` on flat ``[B, P]`` parameters."""
    return family.flatten(canonicalize(family, family.unflatten(flat, container), archs, container, key))


def hidden_width_fields(family: TargetFamily, container: Sequence[int]) -> list[str]:
    """The architecture fields whose units are hidden (permutable), in order: one per hidden layer."""
    fields = [f for f in family.arch_fields if f not in family.fixed_fields]
    return [f for f in fields if UnitLayout(family, container, f).hidden]


def canonicalize_layers(
    family: TargetFamily, params: Params, archs: Tensor, container: Sequence[int], key: str = "incoming_norm"
) -> Params:
    """:func:`canonicalize` applied to every hidden layer in turn, for networks of any depth.

    Permuting one layer's units permutes the columns of the next layer's weights, which leaves that
    layer's ``incoming_norm`` (the norm of each unit's incoming weights) unchanged, so sorting the
    layers one after another gives one canonical form per function class. ``hinge`` needs one
    scalar input per unit, so it applies to a first layer on 1-D inputs only (an error names it).
    Families whose widths are all outputs have nothing to canonicalize (an error says so).
    """
    fields = hidden_width_fields(family, container)
    if not fields:
        raise ConfigError(f"family '{family.name}' has no hidden width field: nothing to canonicalize")
    for field in fields:
        params = canonicalize(family, params, archs, container, key, field)
    return params
