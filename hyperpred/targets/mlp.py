"""Regression MLP: 1 input → H hidden ReLU units → 1 output (the seed's example 1)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hyperpred.registry import register
from hyperpred.targets.base import Arch, Params, TargetFamily, unit_mask


@register("family")
class MLPFamily(TargetFamily):
    """``Linear(1, H) → ReLU → Linear(H, 1)``; H varies per target and is padded/masked."""

    name = "mlp"
    arch_fields = ("hidden",)

    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        (h,) = arch
        return {"w1": (h, 1), "b1": (h,), "w2": (1, h), "b2": (1,)}

    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (1,)

    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (1,)

    def _hidden_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        return unit_mask(archs[:, 0], container[0])

    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        m = self._hidden_mask(archs, container)
        return {"w1": m.unsqueeze(2), "b1": m, "w2": m.unsqueeze(1), "b2": torch.ones_like(m[:, :1])}

    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        return None

    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        out_bound = archs[:, 0].to(torch.get_default_dtype()).rsqrt()
        one = torch.ones_like(out_bound)
        return {
            "w1": one.view(-1, 1, 1),
            "b1": one.view(-1, 1),
            "w2": out_bound.view(-1, 1, 1),
            "b2": out_bound.view(-1, 1),
        }

    def _hidden(self, params: Params, x: Tensor, archs: Tensor | None) -> Tensor:
        pre = torch.baddbmm(params["b1"].unsqueeze(1), x, params["w1"].transpose(1, 2))
        h = torch.relu(pre)
        if archs is not None:
            h = h * self._hidden_mask(archs, (params["b1"].shape[1],)).unsqueeze(1).to(h.dtype)
        return h

    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        h = self._hidden(params, x, archs)
        return torch.baddbmm(params["b2"].unsqueeze(1), h, params["w2"].transpose(1, 2))

    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        h = self._hidden(params, x, archs)
        y = torch.baddbmm(params["b2"].unsqueeze(1), h, params["w2"].transpose(1, 2))
        return [h, y]

    def build_module(self, arch: Sequence[int]) -> nn.Module:
        (h,) = arch
        return nn.Sequential(OrderedDict(hidden=nn.Linear(1, h), act=nn.ReLU(), out=nn.Linear(h, 1)))

    def module_state(self, params: Params) -> dict[str, Tensor]:
        return {
            "hidden.weight": params["w1"],
            "hidden.bias": params["b1"],
            "out.weight": params["w2"],
            "out.bias": params["b2"],
        }

    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        return {
            "w1": state["hidden.weight"],
            "b1": state["hidden.bias"],
            "w2": state["out.weight"],
            "b2": state["out.bias"],
        }

    def arch_of_module(self, module: nn.Module) -> Arch:
        return (module.hidden.out_features,)
