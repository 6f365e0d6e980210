"""One ``nn.Conv2d(in, out, k)`` layer on square images (the seed's example 2).

``out_channels`` may vary per target (masked); ``in_channels`` and ``kernel_size`` change the
input and the output geometry, so they are fixed within a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperpred.config_schema import check_value
from hyperpred.registry import register
from hyperpred.targets.base import Arch, Params, TargetFamily, unit_mask


@register("family")
class ConvFamily(TargetFamily):
    name = "conv"
    arch_fields = ("in_channels", "out_channels", "kernel_size")
    fixed_fields = ("in_channels", "kernel_size")

    def __init__(self, image_size: int = 28) -> None:
        check_value("target.family.image_size", image_size)
        self.image_size = image_size

    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        cin, cout, k = arch
        return {"weight": (cout, cin, k, k), "bias": (cout,)}

    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (arch[0], self.image_size, self.image_size)

    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        side = self.image_size - arch[2] + 1
        if side <= 0:
            raise ValueError(f"kernel_size {arch[2]} does not fit image_size {self.image_size}")
        return (arch[1], side, side)

    def _channel_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        return unit_mask(archs[:, 1], container[1])

    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        m = self._channel_mask(archs, container)
        _, side, _ = self.output_shape(container)
        return m.view(*m.shape, 1, 1).expand(-1, -1, side, side)

    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        m = self._channel_mask(archs, container)
        cin, _, k = container
        return {"weight": m.view(*m.shape, 1, 1, 1).expand(-1, -1, cin, k, k), "bias": m}

    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        fan_in = (archs[:, 0] * archs[:, 2] ** 2).to(torch.get_default_dtype())
        bound = fan_in.rsqrt()
        return {"weight": bound.view(-1, 1, 1, 1, 1), "bias": bound.view(-1, 1)}

    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        """All targets in one grouped convolution: group b convolves target b's images."""
        w, b = params["weight"], params["bias"]
        batch, n, cin, side, _ = x.shape
        cout = w.shape[1]
        grouped = x.transpose(0, 1).reshape(n, batch * cin, side, side)
        y = F.conv2d(grouped, w.reshape(batch * cout, *w.shape[2:]), b.reshape(-1), groups=batch)
        y = y.reshape(n, batch, cout, *y.shape[-2:]).transpose(0, 1)
        if archs is not None:
            y = y * self._channel_mask(archs, (cin, cout, w.shape[-1])).view(batch, 1, cout, 1, 1).to(y.dtype)
        return y

    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        return [self.outputs_as_units(self.forward(params, x, archs))]

    def outputs_as_units(self, y: Tensor) -> Tensor:
        # [B, n, C, H, W] → [B, n·H·W, C]: every spatial position is a sample of each channel.
        return y.movedim(2, -1).reshape(y.shape[0], -1, y.shape[2])

    def build_module(self, arch: Sequence[int]) -> nn.Module:
        return nn.Conv2d(arch[0], arch[1], arch[2])

    def module_state(self, params: Params) -> dict[str, Tensor]:
        return {"weight": params["weight"], "bias": params["bias"]}

    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        return {"weight": state["weight"], "bias": state["bias"]}

    def arch_of_module(self, module: nn.Module) -> Arch:
        return (module.in_channels, module.out_channels, module.kernel_size[0])

    def describe(self) -> dict:
        return {"name": self.name, "image_size": self.image_size}
