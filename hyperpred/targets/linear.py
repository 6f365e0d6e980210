"""One ``nn.Linear(in, out)`` layer (the seed's example 3); ``out`` may vary and is masked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hyperpred.registry import register
from hyperpred.targets.base import Arch, Params, TargetFamily, unit_mask


@register("family")
class LinearFamily(TargetFamily):
    name = "linear"
    arch_fields = ("in_features", "out_features")
    fixed_fields = ("in_features",)

    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        fin, fout = arch
        return {"weight": (fout, fin), "bias": (fout,)}

    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (arch[0],)

    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (arch[1],)

    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        return unit_mask(archs[:, 1], container[1])

    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        m = self.output_mask(archs, container)
        return {"weight": m.unsqueeze(2).expand(-1, -1, container[0]), "bias": m}

    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        bound = archs[:, 0].to(torch.get_default_dtype()).rsqrt()
        return {"weight": bound.view(-1, 1, 1), "bias": bound.view(-1, 1)}

    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        y = torch.baddbmm(params["bias"].unsqueeze(1), x, params["weight"].transpose(1, 2))
        if archs is not None:
            y = y * self.output_mask(archs, (x.shape[-1], params["bias"].shape[1])).unsqueeze(1).to(y.dtype)
        return y

    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        return [self.forward(params, x, archs)]

    def build_module(self, arch: Sequence[int]) -> nn.Module:
        return nn.Linear(arch[0], arch[1])

    def module_state(self, params: Params) -> dict[str, Tensor]:
        return {"weight": params["weight"], "bias": params["bias"]}

    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        return {"weight": state["weight"], "bias": state["bias"]}

    def arch_of_module(self, module: nn.Module) -> Arch:
        return (module.in_features, module.out_features)
