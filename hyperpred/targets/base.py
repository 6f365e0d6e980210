"""The contract every target family fulfils.

A *family* is a parametric kind of network (a 1-hidden-layer MLP, one conv layer, ...). A member
of the family is fixed by an *architecture*: a small tuple of integers (``hidden`` for the MLP,
``in_channels, out_channels, kernel_size`` for the conv layer). Targets of different
architectures share one batch by zero-padding every parameter tensor to a *container*
architecture (the elementwise maximum) and masking: padded hidden units or output channels are
switched off in the forward pass, so a padded target computes exactly the function of the
unpadded one. Everything here works on a leading batch dimension of targets, so that thousands
of targets are trained, evaluated and predicted with single tensor ops.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]
Arch = tuple[int, ...]


class TargetFamily(ABC):
    """A family of target networks with batched, padded, functional parameters."""

    #: Short name used in configs, cache keys and checkpoints.
    name: str = ""
    #: Names of the integers that define one architecture, in order.
    arch_fields: tuple[str, ...] = ()
    #: Architecture fields that must be equal for all targets sharing a batch (they change the
    #: input or the geometry, so they cannot be padded away).
    fixed_fields: tuple[str, ...] = ()

    # ------------------------------------------------------------------ architectures
    def arch_from_mapping(self, spec: Mapping[str, int] | Sequence[int]) -> Arch:
        """Turn ``{"hidden": 16}`` (or ``(16,)``) into the family's arch tuple, checking keys."""
        if isinstance(spec, Mapping):
            unknown = set(spec) - set(self.arch_fields)
            missing = set(self.arch_fields) - set(spec)
            if unknown or missing:
                raise ValueError(
                    f"architecture {dict(spec)} for family '{self.name}' must have exactly the "
                    f"keys {list(self.arch_fields)} (unknown: {sorted(unknown)}, missing: {sorted(missing)})"
                )
            values = [spec[f] for f in self.arch_fields]
        else:
            values = list(spec)
            if len(values) != len(self.arch_fields):
                raise ValueError(f"architecture {values} needs {len(self.arch_fields)} values {self.arch_fields}")
        for field, value in zip(self.arch_fields, values):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"architecture field '{field}' must be a positive integer, got {value!r}")
        return tuple(int(v) for v in values)

    def arch_to_dict(self, arch: Sequence[int]) -> dict[str, int]:
        return {f: int(v) for f, v in zip(self.arch_fields, arch)}

    def container(self, archs: Iterable[Sequence[int]]) -> Arch:
        """The smallest architecture that holds every given one (elementwise maximum)."""
        archs = [tuple(a) for a in archs]
        if not archs:
            raise ValueError("container() needs at least one architecture")
        for field in self.fixed_fields:
            i = self.arch_fields.index(field)
            values = sorted({a[i] for a in archs})
            if len(values) > 1:
                raise ValueError(
                    f"family '{self.name}': '{field}' must be the same for all architectures of a run, got {values}"
                )
        return tuple(max(col) for col in zip(*archs))

    # ------------------------------------------------------------------ shapes
    @abstractmethod
    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Named parameter shapes of one target (without the batch dimension), in a fixed order."""

    @abstractmethod
    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        """Shape of one input sample."""

    @abstractmethod
    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        """Shape of one output sample."""

    def num_params(self, arch: Sequence[int]) -> int:
        return sum(math.prod(s) for s in self.param_shapes(arch).values())

    @abstractmethod
    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        """Boolean masks ``[B, *shape]`` of the entries each target really has."""

    @abstractmethod
    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        """Mask ``[B, *output_shape]`` of real output entries, or None when outputs never pad."""

    # ------------------------------------------------------------------ computation
    @abstractmethod
    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        """Run a batch of targets: ``params[k]: [B, *shape]``, ``x: [B, n, *input]`` → ``[B, n, *output]``.

        ``archs`` (``[B, len(arch_fields)]``) switches padded units off; None means unpadded.
        """

    @abstractmethod
    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        """Each layer's activations as ``[B, M, units]`` (M = samples × spatial positions)."""

    def outputs_as_units(self, y: Tensor) -> Tensor:
        """Reshape outputs ``[B, n, *output]`` to ``[B, M, units]`` like :meth:`activations`."""
        return y.reshape(y.shape[0], -1, y.shape[-1])

    @abstractmethod
    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        """PyTorch's default init bound ``1/sqrt(fan_in)`` per target and parameter, broadcastable."""

    def init(self, archs: Tensor, container: Sequence[int], generator: torch.Generator) -> Params:
        """PyTorch's default ``nn.Linear``/``nn.Conv2d`` init for a batch of (padded) targets.

        Entries outside a target's architecture are zero. Draws happen at container size, so a
        target's init depends only on the generator state, not on the other targets' archs.
        """
        batch = archs.shape[0]
        masks = self.param_masks(archs, container)
        bounds = self.fan_in_bounds(archs, container)
        out = {}
        for name, shape in self.param_shapes(container).items():
            u = torch.rand((batch, *shape), generator=generator) * 2 - 1
            out[name] = u * bounds[name] * masks[name]
        return out

    # ------------------------------------------------------------------ flat <-> named
    def flatten(self, params: Params) -> Tensor:
        """``{name: [B, *shape]}`` → ``[B, P]`` in the order of :meth:`param_shapes`."""
        return torch.cat([p.flatten(1) for p in params.values()], dim=1)

    def unflatten(self, flat: Tensor, container: Sequence[int]) -> Params:
        """``[B, P]`` → ``{name: [B, *shape]}`` at the container architecture."""
        out, start = {}, 0
        for name, shape in self.param_shapes(container).items():
            size = math.prod(shape)
            out[name] = flat[:, start : start + size].reshape(flat.shape[0], *shape)
            start += size
        if start != flat.shape[1]:
            raise ValueError(f"flat parameters have {flat.shape[1]} values, container {tuple(container)} needs {start}")
        return out

    def flat_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor:
        return self.flatten(self.param_masks(archs, container))

    def crop(self, params: Params, arch: Sequence[int]) -> Params:
        """Cut one target's padded params (no batch dim) down to its own architecture."""
        shapes = self.param_shapes(arch)
        return {k: v[tuple(slice(0, s) for s in shapes[k])].clone() for k, v in params.items()}

    def pad(self, params: Params, container: Sequence[int]) -> Params:
        """Zero-pad one target's params (no batch dim) up to ``container``."""
        out = {}
        for name, shape in self.param_shapes(container).items():
            p = params[name]
            z = p.new_zeros(shape)
            z[tuple(slice(0, s) for s in p.shape)] = p
            out[name] = z
        return out

    # ------------------------------------------------------------------ nn.Module bridge
    @abstractmethod
    def build_module(self, arch: Sequence[int]) -> nn.Module:
        """A fresh ``nn.Module`` of this architecture (the module the flat params describe)."""

    @abstractmethod
    def module_state(self, params: Params) -> dict[str, Tensor]:
        """Map our parameter names to the module's ``state_dict`` names (unbatched, cropped)."""

    @abstractmethod
    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        """Inverse of :meth:`module_state`."""

    @abstractmethod
    def arch_of_module(self, module: nn.Module) -> Arch:
        """Read the architecture back from a module of this family."""

    def to_module(self, arch: Sequence[int], params: Params) -> nn.Module:
        """A real ``nn.Module`` carrying one target's parameters (padded or not)."""
        module = self.build_module(arch)
        module.load_state_dict(self.module_state(self.crop(params, arch)))
        return module

    def from_module(self, module: nn.Module) -> tuple[Arch, Params]:
        """Architecture and (unpadded, unbatched) parameters of an ``nn.Module`` of this family."""
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return self.arch_of_module(module), self.params_from_state(state)

    def describe(self) -> dict:
        """Plain-dict description stored with zoos and checkpoints."""
        return {"name": self.name}


def arch_tensor(archs: Sequence[Sequence[int]]) -> Tensor:
    return torch.tensor([list(a) for a in archs], dtype=torch.long)


def unit_mask(active: Tensor, size: int) -> Tensor:
    """``[B]`` counts of active units → ``[B, size]`` boolean mask of the first ``active`` units."""
    return torch.arange(size, device=active.device).unsqueeze(0) < active.unsqueeze(1)
