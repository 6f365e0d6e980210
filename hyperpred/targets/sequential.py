"""A network written in YAML as a list of layers, widths named as architecture fields.

A thin front end over :class:`~hyperpred.targets.module_family.ModuleFamily`: the layer list
builds an ``nn.Sequential`` (:class:`LayerStack`), and everything else (prefix-box padding,
batched forward, init, the ``nn.Module`` bridge) is ModuleFamily's. For example MAML's sine
regressor 1-40-40-1::

    layers:
      - {linear: hidden1}
      - relu
      - {linear: hidden2}
      - relu
      - {linear: 1}

Layers: ``{linear: W}``, ``{conv2d: C, kernel_size: 3, padding: 1, stride: 1}``, an activation by
name (``relu``, ``tanh``, ``gelu``, ... or ``{activation: name}``), ``{maxpool2d: k}``,
``{avgpool2d: k}``, ``global_avgpool``/``global_maxpool`` (pool every position, then flatten),
``flatten``, ``layernorm``, ``batchnorm``. A width is an integer or a field name; every name used
becomes an architecture field (in order of first use). A width of 0 drops its layer and the
layers after it up to the next linear/conv (so depth can be an architecture field); depth may
differ between runs, not between the targets of one run (their parameters would not line up).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from hyperpred.registry import register
from hyperpred.targets.base import Arch
from hyperpred.targets.module_family import ModuleFamily, _plain

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}
#: Layers with a width (their output size) and the key that holds it.
WIDE = ("linear", "conv2d")
SIMPLE = ("flatten", "layernorm", "batchnorm", "global_avgpool", "global_maxpool")
POOLS = ("maxpool2d", "avgpool2d")


def _kind(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``"relu"`` or ``{linear: W, ...}`` → (kind, arguments), with a one-line error naming ``where``."""
    if isinstance(spec, str):
        if spec in ACTIVATIONS:
            return "activation", {"activation": spec}
        if spec in SIMPLE:
            return spec, {}
        raise ValueError(
            f"{where}={spec!r} is not a layer; use one of {sorted((*ACTIVATIONS, *SIMPLE))} or a mapping like "
            "{linear: hidden1}"
        )
    if isinstance(spec, Mapping):
        kinds = [k for k in spec if k in (*WIDE, *POOLS, "activation")]
        if len(kinds) != 1:
            raise ValueError(f"{where}={dict(spec)} must have exactly one of the keys {[*WIDE, *POOLS, 'activation']}")
        kind = kinds[0]
        allowed = {"conv2d": {"conv2d", "kernel_size", "padding", "stride"}}.get(kind, {kind})
        extra = set(spec) - allowed
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)} for a {kind} layer (allowed: {sorted(allowed)})")
        if kind == "activation" and spec["activation"] not in ACTIVATIONS:
            raise ValueError(f"{where}.activation={spec['activation']!r}: choose one of {sorted(ACTIVATIONS)}")
        return kind, dict(spec)
    raise ValueError(f"{where} must be a layer name or a mapping, got {spec!r}")


def field_names(layers: Sequence[Any]) -> tuple[str, ...]:
    """The named widths of a layer list, in order of first use."""
    names: list[str] = []
    for i, spec in enumerate(layers):
        kind, args = _kind(spec, f"target.family.layers[{i}]")
        if kind in WIDE:
            width = args[kind]
            if isinstance(width, str) and width not in names:
                names.append(width)
            elif not isinstance(width, (str, int)) or isinstance(width, bool):
                raise ValueError(f"target.family.layers[{i}].{kind} must be an integer or a field name, got {width!r}")
    return tuple(names)


class LayerStack(nn.Sequential):
    """The ``nn.Sequential`` a layer list describes at one architecture (fields kept as attributes)."""

    def __init__(self, layers: Sequence[Any], input_shape: Sequence[int], **arch: int) -> None:
        super().__init__()
        for name, value in arch.items():
            setattr(self, name, int(value))
        shape = tuple(int(s) for s in input_shape)
        dropping = False
        for i, spec in enumerate(layers):
            kind, args = _kind(spec, f"target.family.layers[{i}]")
            if kind in WIDE:
                width = args[kind]
                width = int(arch[width]) if isinstance(width, str) else int(width)
                dropping = width == 0
            if dropping:
                continue
            layer, shape = _layer(kind, args, shape, width if kind in WIDE else 0, i)
            self.add_module(f"{i}_{kind}", layer)


def _layer(kind: str, args: dict[str, Any], shape: tuple[int, ...], width: int, i: int) -> tuple[nn.Module, tuple]:
    """One layer on inputs of ``shape`` (one sample), and the shape it outputs."""
    if kind == "linear":
        return nn.Linear(shape[-1], width), (*shape[:-1], width)
    if kind == "conv2d":
        if len(shape) != 3:
            raise ValueError(f"target.family.layers[{i}]: conv2d needs [C, H, W] inputs, gets {list(shape)}")
        k, p, s = int(args.get("kernel_size", 3)), int(args.get("padding", 0)), int(args.get("stride", 1))
        side = [(n + 2 * p - k) // s + 1 for n in shape[1:]]
        if min(side) <= 0:
            raise ValueError(f"target.family.layers[{i}]: kernel_size {k} does not fit inputs {list(shape)}")
        return nn.Conv2d(shape[0], width, k, stride=s, padding=p), (width, *side)
    if kind == "activation":
        return ACTIVATIONS[args["activation"]](), shape
    if kind in POOLS:
        k = int(args[kind])
        pool = nn.MaxPool2d(k) if kind == "maxpool2d" else nn.AvgPool2d(k)
        return pool, (shape[0], *(n // k for n in shape[1:]))
    if kind in ("global_avgpool", "global_maxpool"):
        pool = nn.AdaptiveAvgPool2d(1) if kind == "global_avgpool" else nn.AdaptiveMaxPool2d(1)
        return nn.Sequential(pool, nn.Flatten()), (shape[0],)
    if kind == "flatten":
        return nn.Flatten(), (math.prod(shape),)
    if kind == "layernorm":
        return nn.LayerNorm(shape[-1]), shape
    # batchnorm: over features of [F] samples or channels of [C, H, W] samples
    return (nn.BatchNorm1d(shape[0]) if len(shape) == 1 else nn.BatchNorm2d(shape[0])), shape


@register("family")
class SequentialFamily(ModuleFamily):
    """A layer list from the config as a :class:`ModuleFamily`."""

    def __init__(
        self,
        layers: Sequence[Any],
        input_shape: Sequence[int],
        fixed_fields: Sequence[str] = (),
        name: str = "sequential",
    ) -> None:
        self.layers = _plain(layers)
        if not isinstance(self.layers, list) or not self.layers:
            raise ValueError("target.family.layers must be a non-empty list of layers")
        fields = field_names(self.layers)
        if not fields:
            raise ValueError(
                "target.family.layers names no width: write a width as a field name, e.g. {linear: hidden1}"
            )
        shape = [int(s) for s in _plain(input_shape)]
        module = functools.partial(LayerStack, layers=self.layers, input_shape=shape)
        super().__init__(module, fields, shape, fixed_fields, name)

    def arch_from_mapping(self, spec: Mapping[str, int] | Sequence[int]) -> Arch:
        """Widths may be 0 (the layer is dropped), unlike the base rule of positive integers."""
        values = dict(spec) if isinstance(spec, Mapping) else dict(zip(self.arch_fields, spec))
        zero = {k for k, v in values.items() if v == 0 and not isinstance(v, bool)}
        arch = super().arch_from_mapping({k: (1 if k in zero else v) for k, v in values.items()})
        return tuple(0 if f in zero else a for f, a in zip(self.arch_fields, arch))

    def container(self, archs: Iterable[Sequence[int]]) -> Arch:
        archs = [tuple(a) for a in archs]
        for i, field in enumerate(self.arch_fields):
            if len({a[i] == 0 for a in archs}) > 1:
                raise ValueError(
                    f"family '{self.name}': '{field}' is 0 (layer dropped) for some architectures and not for others; "
                    "depth may differ between runs, not within one"
                )
        return super().container(archs)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "layers": self.layers,
            "input_shape": list(self._input_spec),
            "fixed_fields": list(self.fixed_fields),
        }
