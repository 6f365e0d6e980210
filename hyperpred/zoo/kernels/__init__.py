"""Training kernels and the rule that picks one per family, task, recipe and device.

The choice is a fixed rule, never a timing taken at run time: a zoo's bytes must not depend on
how busy the machine was. The order below comes from ``scripts/bench_zoo.py`` (see
docs/benchmarks.md): closed forms first, autograd as the fallback that fits every family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hyperpred.errors import ConfigError
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.kernels.affine import AffineDirectKernel, AffineGramKernel
from hyperpred.zoo.kernels.autograd import AutogradKernel
from hyperpred.zoo.kernels.base import Kernel, is_plain_mse, output_grad_
from hyperpred.zoo.kernels.chain import ChainKernel
from hyperpred.zoo.kernels.mlp import MLPClosedFormKernel
from hyperpred.zoo.kernels.module import ModuleKernel
from hyperpred.zoo.spec import TrainRecipe

#: Every kernel by name; families added later register theirs with :func:`register_kernel`.
KERNELS: dict[str, type[Kernel]] = {}
#: Preference order per device type ("*" = any device without its own list).
PREFERENCE: dict[str, list[str]] = {"*": []}


def register_kernel(cls: type[Kernel], before: str | None = "autograd") -> type[Kernel]:
    """Make ``cls`` selectable, tried before the kernel named ``before`` on every device."""
    KERNELS[cls.name] = cls
    for order in PREFERENCE.values():
        if cls.name not in order:
            order.insert(order.index(before) if before in order else len(order), cls.name)
    return cls


for _cls in (AffineGramKernel, MLPClosedFormKernel, AffineDirectKernel, ChainKernel, ModuleKernel, AutogradKernel):
    register_kernel(_cls, before=None)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``zoo.device`` as a torch device (None = CPU), failing early when it is unknown or absent."""
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"zoo.device={device!r} is not a device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"zoo.device={device!r}, but this machine has no CUDA device; use zoo.device=cpu")
    return dev


def select_kernel(
    family: TargetFamily,
    task: Task,
    recipe: TrainRecipe,
    device: torch.device | str | None = "cpu",
    strategy: str = "auto",
    container: Sequence[int] | None = None,
) -> type[Kernel]:
    """The kernel to train with: ``strategy`` by name, or the first supported one in preference order.

    ``container`` (the chunk's container architecture) lets structure-dependent kernels decide;
    training always passes it.
    """
    device = resolve_device(device)
    if strategy != "auto":
        if strategy not in KERNELS:
            raise ConfigError(f"zoo.strategy={strategy!r} is unknown; choose auto or one of {sorted(KERNELS)}")
        cls = KERNELS[strategy]
        if not cls.supports(family, task, recipe, device, container):
            raise ConfigError(
                f"zoo.strategy={strategy} cannot train target={family.name} on task={task.name} with this recipe; use "
                "zoo.strategy=auto"
            )
        return cls
    for name in PREFERENCE.get(device.type, PREFERENCE["*"]):
        if KERNELS[name].supports(family, task, recipe, device, container):
            return KERNELS[name]
    return AutogradKernel


__all__ = [
    "Kernel",
    "KERNELS",
    "PREFERENCE",
    "AffineDirectKernel",
    "AffineGramKernel",
    "AutogradKernel",
    "ChainKernel",
    "MLPClosedFormKernel",
    "ModuleKernel",
    "is_plain_mse",
    "output_grad_",
    "register_kernel",
    "resolve_device",
    "select_kernel",
]
