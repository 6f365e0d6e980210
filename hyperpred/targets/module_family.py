"""A target family made from any ``nn.Module`` whose integer constructor arguments are its architecture.

Write the network as an ordinary ``nn.Module`` class; name it in the config as a nested ``_target_``
with ``_partial_: true`` and list the integer constructor arguments that vary (``arch_fields``)::

    family:
      _target_: hyperpred.targets.ModuleFamily
      module: {_target_: my_pkg.nets.TwoLayer, _partial_: true}
      arch_fields: [hidden1, hidden2]
      input_shape: [1]

Shapes come from building the module on the meta device (no memory, no init). Targets of different
sizes share a batch by zero-padding every parameter to the container's shape as a *prefix box*: a
smaller ``Linear``/``Conv2d`` is the top-left block of a larger one, so with the padded entries at
zero the container computes each smaller target's function exactly, whatever the activation (a
padded unit's outgoing weights are zero). The zoo keeps padded entries at zero by masking their
gradients. Fields that cannot be padded (input channels, kernel sizes) go in ``fixed_fields``.

Buffers (BatchNorm running statistics) are not learned: the family runs the module in *eval mode*
with the container's freshly built buffers (mean 0 and variance 1 for BatchNorm, the same in
every prefix box), so a BatchNorm layer is a learned per-channel affine map. A normalization
across a padded width (LayerNorm, GroupNorm) would see the padding; :meth:`container` refuses
such a run and names the layer, so the width must be a fixed field there.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from hyperpred.registry import class_path, register
from hyperpred.targets.base import Arch, Params, TargetFamily

#: Layers that normalize across their features: a padded width there changes the function.
_CROSS_UNIT_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
#: Held while a module is built under the global RNG: the zoo builder trains shards in threads, and
#: one thread's ``manual_seed`` must not be consumed by another thread's module construction.
_GLOBAL_RNG = threading.Lock()
#: Leaf layers whose output is not a new representation (skipped when collecting activations).
_PASSIVE = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity)


def _plain(value: Any) -> Any:
    """Hydra containers (ListConfig/DictConfig) and tuples as plain JSON-able Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def _norm_width(layer: nn.Module) -> tuple:
    """What a cross-unit normalization averages over (LayerNorm's shape, GroupNorm's channels, ...)."""
    return tuple(
        tuple(getattr(layer, a)) if isinstance(getattr(layer, a), (tuple, list)) else getattr(layer, a)
        for a in ("normalized_shape", "num_channels", "size")
        if hasattr(layer, a)
    )


def _prefix(shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in shape)


@register("family")
class ModuleFamily(TargetFamily):
    """Any ``nn.Module`` as a padded, batched, functional target family."""

    def __init__(
        self,
        module: Callable[..., nn.Module],
        arch_fields: Sequence[str],
        input_shape: Sequence[int | str],
        fixed_fields: Sequence[str] = (),
        name: str = "module",
    ) -> None:
        if isinstance(module, Mapping) or not callable(module):
            raise ValueError(
                "target.family.module must be a _target_ node with _partial_: true (the module class and its "
                f"constant arguments), got {type(module).__name__}"
            )
        self.module = module
        self.name = str(name)
        self.arch_fields = tuple(str(f) for f in _plain(arch_fields))
        if not self.arch_fields:
            raise ValueError("target.family.arch_fields must name at least one integer argument of the module")
        self.fixed_fields = tuple(str(f) for f in _plain(fixed_fields))
        unknown = [f for f in self.fixed_fields if f not in self.arch_fields]
        if unknown:
            raise ValueError(f"target.family.fixed_fields {unknown} are not in target.family.arch_fields")
        self._input_spec = tuple(_plain(input_shape))
        for dim in self._input_spec:
            if not (isinstance(dim, str) and dim in self.arch_fields) and not (isinstance(dim, int) and dim > 0):
                raise ValueError(
                    f"target.family.input_shape entries must be positive integers or arch field names, got {dim!r}"
                )
        self._metas: dict[Arch, nn.Module] = {}
        self._shells: dict[tuple[Arch, int], tuple[nn.Module, dict[str, Tensor]]] = {}
        self._arch_of_shapes: dict[tuple, Arch] = {}
        self._out_shapes: dict[Arch, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ the module at one arch
    def _kwargs(self, arch: Sequence[int]) -> dict[str, int]:
        return {f: int(v) for f, v in zip(self.arch_fields, arch)}

    def build_module(self, arch: Sequence[int]) -> nn.Module:
        """A real module of this architecture, initialized by its own code (uses the global RNG)."""
        return self.module(**self._kwargs(arch))

    def _meta(self, arch: Sequence[int]) -> nn.Module:
        """The module built on the meta device: shapes without memory or init."""
        arch = tuple(int(a) for a in arch)
        if arch not in self._metas:
            with torch.device("meta"):
                self._metas[arch] = self.build_module(arch)
        return self._metas[arch]

    def meta_module(self, arch: Sequence[int]) -> nn.Module:
        """The module of ``arch`` on the meta device (for reading its structure; do not run it)."""
        return self._meta(arch)

    def module_shell(self, arch: Sequence[int]) -> tuple[nn.Module, dict[str, Tensor]]:
        """A real module of ``arch`` in eval mode and its buffers (``functional_call`` replaces its parameters)."""
        # one per thread: functional_call swaps the shell's parameters while it runs, and the zoo
        # builder trains shards in threads
        key = (tuple(int(a) for a in arch), threading.get_ident())
        if key not in self._shells:
            with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
                shell = self.build_module(key[0]).eval()
            self._shells[key] = (shell, {k: v.detach() for k, v in shell.named_buffers()})
        return self._shells[key]

    # ------------------------------------------------------------------ shapes
    def param_shapes(self, arch: Sequence[int]) -> dict[str, tuple[int, ...]]:
        arch = tuple(int(a) for a in arch)
        shapes = {k: tuple(p.shape) for k, p in self._meta(arch).named_parameters()}
        self._arch_of_shapes.setdefault(tuple(shapes.values()), arch)
        return shapes

    def input_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        values = self._kwargs(arch)
        return tuple(values[d] if isinstance(d, str) else int(d) for d in self._input_spec)

    def output_shape(self, arch: Sequence[int]) -> tuple[int, ...]:
        arch = tuple(int(a) for a in arch)
        if arch not in self._out_shapes:  # a meta-device forward costs ~10 ms; every zoo chunk asks
            self._out_shapes[arch] = self._run_meta(arch)
        return self._out_shapes[arch]

    def _run_meta(self, arch: Arch) -> tuple[int, ...]:
        meta = self._meta(arch)
        try:
            with torch.no_grad():
                out = meta.eval()(torch.empty(1, *self.input_shape(arch), device="meta"))
        except (RuntimeError, ValueError) as e:
            raise ValueError(
                f"{self.name} {self.arch_to_dict(arch)} does not run on inputs of shape {self.input_shape(arch)}: {e}"
            ) from None
        return tuple(out.shape[1:])

    def container(self, archs: Iterable[Sequence[int]]) -> Arch:
        archs = [tuple(a) for a in archs]
        box = super().container(archs)
        for name, layer in self._meta(box).named_modules():
            if isinstance(layer, _CROSS_UNIT_NORMS):
                sizes = {_norm_width(self._meta(a).get_submodule(name)) for a in archs}
                if len(sizes) > 1:
                    raise ValueError(
                        f"{self.name}: layer '{name}' ({type(layer).__name__}) normalizes across a width that varies "
                        f"between architectures ({sorted(sizes)}); padding would change it, so declare that width in "
                        "target.family.fixed_fields"
                    )
        return box

    def _by_arch(self, archs: Tensor, make: Callable[[Arch], Tensor]) -> Tensor:
        """``make(arch)`` for each distinct row of ``archs``, gathered per target ``[B, ...]``."""
        uniq, inverse = torch.unique(archs.cpu(), dim=0, return_inverse=True)
        stacked = torch.stack([make(tuple(int(v) for v in u)) for u in uniq])
        return stacked[inverse].to(archs.device)

    def param_masks(self, archs: Tensor, container: Sequence[int]) -> Params:
        big = self.param_shapes(container)
        out = {}
        for name, shape in big.items():

            def box(arch: Arch, name: str = name, shape: tuple[int, ...] = shape) -> Tensor:
                m = torch.zeros(shape, dtype=torch.bool)
                m[_prefix(self.param_shapes(arch)[name])] = True
                return m

            out[name] = self._by_arch(archs, box)
        return out

    def output_mask(self, archs: Tensor, container: Sequence[int]) -> Tensor | None:
        full = self.output_shape(container)
        shapes = {self.output_shape(tuple(int(v) for v in u)) for u in torch.unique(archs.cpu(), dim=0)}
        if shapes == {full}:
            return None

        def box(arch: Arch) -> Tensor:
            m = torch.zeros(full, dtype=torch.bool)
            m[_prefix(self.output_shape(arch))] = True
            return m

        return self._by_arch(archs, box)

    def fan_in_bounds(self, archs: Tensor, container: Sequence[int]) -> Params:
        """``1/sqrt(fan_in)`` of each target's own tensor (a vector's fan-in: its layer's weight's)."""
        names = list(self.param_shapes(container))

        def bounds(arch: Arch) -> Tensor:
            shapes, fan, values = self.param_shapes(arch), 1, []
            for name in names:
                if len(shapes[name]) >= 2:
                    fan = math.prod(shapes[name][1:])
                values.append(fan**-0.5)
            return torch.tensor(values, dtype=torch.get_default_dtype())

        per = self._by_arch(archs, bounds)
        return {n: per[:, i].view(-1, *([1] * len(s))) for i, (n, s) in enumerate(self.param_shapes(container).items())}

    def init(self, archs: Tensor, container: Sequence[int], generator: torch.Generator) -> Params:
        """The module's own initialization at each target's size, copied into its prefix box.

        A module's init is arbitrary Python code, so each target builds its own module once (seeded
        from ``generator``, the global RNG restored afterwards). This is the one loop over targets,
        paid once per zoo and never in training.
        """
        batch = archs.shape[0]
        seeds = torch.randint(2**62, (batch,), generator=generator).tolist()
        out = {k: torch.zeros(batch, *s) for k, s in self.param_shapes(container).items()}
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            for i, (row, seed) in enumerate(zip(archs.tolist(), seeds)):
                torch.default_generator.manual_seed(seed)  # torch.manual_seed also seeds CUDA/XPU: 0.5 ms more
                for name, p in self.build_module(row).named_parameters():
                    out[name][(i, *_prefix(p.shape))] = p.detach()
        return out

    # ------------------------------------------------------------------ computation
    def _container_of(self, params: Params) -> Arch:
        key = tuple(tuple(p.shape[1:]) for p in params.values())
        if key not in self._arch_of_shapes:
            raise ValueError(f"{self.name}: parameter shapes {list(key)} match no architecture seen by this family")
        return self._arch_of_shapes[key]

    def _run(self, params: Params, x: Tensor, collect: bool) -> tuple[Tensor, list[Tensor]]:
        """The container module over every target's parameter set at once (functional_call under vmap)."""
        shell, buffers = self.module_shell(self._container_of(params))
        buffers = {k: v.to(x.device) for k, v in buffers.items()}
        layers = self._activation_layers(shell) if collect else []

        def one(p: Params, xb: Tensor) -> tuple[Tensor, ...]:
            seen: list[Tensor] = []
            hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(o)) for m in layers]
            try:
                y = functional_call(shell, (p, buffers), (xb,))
            finally:
                for h in hooks:
                    h.remove()
            return (y, *seen)

        y, *acts = vmap(one)(params, x)
        return y, acts

    @staticmethod
    def _activation_layers(shell: nn.Module) -> list[nn.Module]:
        """Activation-function layers, or (a network without any) every parameterized layer but the last."""
        leaves = [m for m in shell.modules() if not list(m.children()) and not isinstance(m, _PASSIVE)]
        acts = [m for m in leaves if type(m).__module__ == "torch.nn.modules.activation"]
        if acts:
            return acts
        return [m for m in leaves if any(True for _ in m.parameters(recurse=False))][:-1]

    def forward(self, params: Params, x: Tensor, archs: Tensor | None = None) -> Tensor:
        return self._run(params, x, collect=False)[0]

    def activations(self, params: Params, x: Tensor, archs: Tensor | None = None) -> list[Tensor]:
        """Each activation layer's output (spatial positions averaged) and the output, ``[B, n, units]``."""
        y, acts = self._run(params, x, collect=True)
        return [a.flatten(3).mean(3) if a.dim() > 3 else a for a in (*acts, y)]

    # ------------------------------------------------------------------ nn.Module bridge
    def to_module(self, arch: Sequence[int], params: Params) -> nn.Module:
        module = self.build_module(arch)
        state = module.state_dict()
        state.update(self.crop(params, arch))
        module.load_state_dict(state)
        return module

    def module_state(self, params: Params) -> dict[str, Tensor]:
        return dict(params)

    def params_from_state(self, state: Mapping[str, Tensor]) -> Params:
        names = list(next(iter(self._metas.values())).state_dict()) if self._metas else list(state)
        params = [n for n in names if n in state]
        return {n: state[n] for n in params}

    def arch_of_module(self, module: nn.Module) -> Arch:
        missing = [f for f in self.arch_fields if not isinstance(getattr(module, f, None), int)]
        if missing:
            raise ValueError(
                f"{type(module).__name__} does not store its architecture fields {missing} as integer attributes"
            )
        return tuple(int(getattr(module, f)) for f in self.arch_fields)

    def from_module(self, module: nn.Module) -> tuple[Arch, Params]:
        arch = self.arch_of_module(module)
        names = self.param_shapes(arch)
        state = module.state_dict()
        params = {n: state[n].detach().clone() for n in names}
        for n, shape in names.items():
            if tuple(params[n].shape) != shape:
                raise ValueError(f"{type(module).__name__}.{n} has shape {tuple(params[n].shape)}, expected {shape}")
        return arch, params

    def describe(self) -> dict:
        func = self.module.func if isinstance(self.module, functools.partial) else self.module
        kwargs = self.module.keywords if isinstance(self.module, functools.partial) else {}
        return {
            "name": self.name,
            "module": class_path(func) if isinstance(func, type) else repr(func),
            "kwargs": _plain(kwargs),
            "arch_fields": list(self.arch_fields),
            "fixed_fields": list(self.fixed_fields),
            "input_shape": list(self._input_spec),
        }
