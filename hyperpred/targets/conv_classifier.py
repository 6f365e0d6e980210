"""A small image classifier: ``Conv2d(in, C, k) → ReLU → global pooling → Linear(C, K)``.

The smallest convolutional *classifier*: the conv layer's channels are local pattern detectors,
pooling makes them position-free, and the head maps C pooled channels to K class logits.
``channels`` and ``classes`` may vary per target (both masked); ``in_channels`` and
``kernel_size`` change the input or the geometry, so they are fixed within a run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperpred.config_schema import check_value
from hyperpred.registry import register
from hyperpred.targets.base import Arch, Params, TargetFamily, unit_mask

POOLS = ("mean", "max")


@register("family")
class ConvClassifierFamily(TargetFamily):
    name = "conv_classifier"
    arch_fields = ("in_channels", "channels", "kernel_size", "classes")
    fixed_fields = ("in_channels", "kernel_size")

    def __init__(self, image_size: int = 8, padding: int = 1, pool: str = "mean") -> None:
        check_value("target.family.image_size", image_size)
        check_value("target.family.padding", padding)
        if pool not in POOLS:
            raise ValueError(f"target.family.pool must be one of {list(POOLS)}, got {pool!r}")
        self.image_size, self.padding, self.pool = image_size, padding, pool

    # ------------------------------------------------------------------ shapes
    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        cin, c, k, classes = arch
        return {"conv_weight": (c, cin, k, k), "conv_bias": (c,), "head_weight": (classes, c), "head_bias": (classes,)}

    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        return (arch[0], self.image_size, self.image_size)

    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        if self.image_size + 2 * self.padding - arch[2] + 1 <= 0:
            raise ValueError(
                f"kernel_size {arch[2]} does not fit image_size {self.image_size} with padding {self.padding}"
            )
        return (arch[3],)

    def _masks(self, archs: Tensor, container: Sequence[int]) -> tuple[Tensor, Tensor]:
        return unit_mask(archs[:, 1], container[1]), unit_mask(archs[:, 3], container[3])

    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        return self._masks(archs, container)[1]

    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        mc, mk = self._masks(archs, container)
        cin, _, k, _ = container
        return {
            "conv_weight": mc.view(*mc.shape, 1, 1, 1).expand(-1, -1, cin, k, k),
            "conv_bias": mc,
            "head_weight": mk.unsqueeze(2) & mc.unsqueeze(1),
            "head_bias": mk,
        }

    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        dtype = torch.get_default_dtype()
        conv = (archs[:, 0] * archs[:, 2] ** 2).to(dtype).rsqrt()
        head = archs[:, 1].to(dtype).rsqrt()
        return {
            "conv_weight": conv.view(-1, 1, 1, 1, 1),
            "conv_bias": conv.view(-1, 1),
            "head_weight": head.view(-1, 1, 1),
            "head_bias": head.view(-1, 1),
        }

    # ------------------------------------------------------------------ computation
    def _feature_maps(self, params: Params, x: Tensor, archs: Tensor | None) -> Tensor:
        """ReLU conv maps ``[B, n, C, H, W]`` of every target in one grouped convolution."""
        w, b = params["conv_weight"], params["conv_bias"]
        batch, n, cin, side, _ = x.shape
        c = w.shape[1]
        grouped = x.transpose(0, 1).reshape(n, batch * cin, side, side)
        y = F.conv2d(grouped, w.reshape(batch * c, *w.shape[2:]), b.reshape(-1), padding=self.padding, groups=batch)
        y = torch.relu(y.reshape(n, batch, c, *y.shape[-2:]).transpose(0, 1))
        if archs is not None:
            y = y * unit_mask(archs[:, 1], c).view(batch, 1, c, 1, 1).to(y.dtype)
        return y

    def _pooled(self, params: Params, x: Tensor, archs: Tensor | None) -> Tensor:
        """Pooled channels ``[B, n, C]``: the features the head classifies."""
        maps = self._feature_maps(params, x, archs)
        return maps.mean((-2, -1)) if self.pool == "mean" else maps.amax((-2, -1))

    def _head(self, params: Params, pooled: Tensor, archs: Tensor | None) -> Tensor:
        logits = torch.baddbmm(params["head_bias"].unsqueeze(1), pooled, params["head_weight"].transpose(1, 2))
        if archs is not None:
            logits = logits * unit_mask(archs[:, 3], logits.shape[-1]).unsqueeze(1).to(logits.dtype)
        return logits

    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        return self._head(params, self._pooled(params, x, archs), archs)

    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        # per sample (not per position), so that every layer lines up with the labels [B, n, K]
        pooled = self._pooled(params, x, archs)
        return [pooled, self._head(params, pooled, archs)]

    # ------------------------------------------------------------------ nn.Module bridge
    def build_module(self, arch: Sequence[int]) -> nn.Module:
        cin, c, k, classes = arch
        pool = nn.AdaptiveAvgPool2d(1) if self.pool == "mean" else nn.AdaptiveMaxPool2d(1)
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(cin, c, k, padding=self.padding),
                act=nn.ReLU(),
                pool=pool,
                flatten=nn.Flatten(),
                head=nn.Linear(c, classes),
            )
        )

    def module_state(self, params: Params) -> dict[str, Tensor]:
        return {
            "conv.weight": params["conv_weight"],
            "conv.bias": params["conv_bias"],
            "head.weight": params["head_weight"],
            "head.bias": params["head_bias"],
        }

    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        return {
            "conv_weight": state["conv.weight"],
            "conv_bias": state["conv.bias"],
            "head_weight": state["head.weight"],
            "head_bias": state["head.bias"],
        }

    def arch_of_module(self, module: nn.Module) -> Arch:
        return (module.conv.in_channels, module.conv.out_channels, module.conv.kernel_size[0], module.head.out_features)

    def describe(self) -> dict:
        return {"name": self.name, "image_size": self.image_size, "padding": self.padding, "pool": self.pool}
