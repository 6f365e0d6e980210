"""Functional networks the peer baselines adapt: flat parameters ``[B, P]``, one row per task.

Every baseline that trains or adapts weights (MAML, fine-tuning curves) sees a network only through
:class:`FunctionalNet`, so switching MAML from its own stacked MLP to the run's family is the one
choice in :func:`build_net`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task


class FunctionalNet:
    """A network as a pure function of flat parameters; subclasses define ``num_params``, ``init``, ``forward``."""

    num_params: int

    def __init__(self, task: Task) -> None:
        self.task = task

    def init(self, generator: torch.Generator) -> Tensor:
        """One flat parameter vector ``[P]`` (PyTorch's default init)."""
        raise NotImplementedError

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        """``flat: [B, P]``, ``x: [B, n, *input]`` → outputs ``[B, n, *output]``."""
        raise NotImplementedError

    def output_mask(self, batch: int) -> Tensor | None:
        return None

    def loss(self, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Per-task loss ``[B]`` (the task's own: MSE or cross-entropy)."""
        return self.task.loss(self.forward(flat, x), y, self.output_mask(flat.shape[0]))

    def accuracy(self, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.task.accuracy(self.forward(flat, x), y, self.output_mask(flat.shape[0]))

    def flops_per_sample(self) -> float:
        """Multiply-adds ×2 of one forward sample (dense layers only)."""
        raise NotImplementedError


class StackedMLP(FunctionalNet):
    """ReLU MLP with widths ``[in, h1, ..., out]`` over flattened inputs (MAML's classic 1-40-40-1)."""

    def __init__(self, widths: Sequence[int], task: Task) -> None:
        super().__init__(task)
        if len(widths) < 2 or any(int(w) <= 0 for w in widths):
            raise ConfigError(f"baselines.maml.net must be widths like [1, 40, 40, 1], got {list(widths)}")
        self.widths = [int(w) for w in widths]
        self.shapes = [(o, i) for i, o in zip(self.widths[:-1], self.widths[1:])]
        self.num_params = sum(o * i + o for o, i in self.shapes)

    def init(self, generator: torch.Generator) -> Tensor:
        parts = []
        for o, i in self.shapes:
            bound = 1 / math.sqrt(i)
            parts += [(torch.rand(o * i, generator=generator) * 2 - 1) * bound]
            parts += [(torch.rand(o, generator=generator) * 2 - 1) * bound]
        return torch.cat(parts)

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        b, n = x.shape[:2]
        h, start = x.reshape(b, n, -1), 0
        for k, (o, i) in enumerate(self.shapes):
            w = flat[:, start : start + o * i].view(b, o, i)
            bias = flat[:, start + o * i : start + o * i + o]
            start += o * i + o
            h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
            if k < len(self.shapes) - 1:
                h = torch.relu(h)
        return h

    def flops_per_sample(self) -> float:
        return float(sum(2 * o * i for o, i in self.shapes))


class FamilyNet(FunctionalNet):
    """A target family at its container architecture, optionally with per-task ``archs`` (padded units off)."""

    def __init__(self, family: TargetFamily, task: Task, container: Sequence[int], archs: Tensor | None = None) -> None:
        super().__init__(task)
        self.family, self.container, self.archs = family, tuple(container), archs
        self.num_params = family.num_params(self.container)

    def with_archs(self, archs: Tensor | None) -> FamilyNet:
        return FamilyNet(self.family, self.task, self.container, archs)

    def init(self, generator: torch.Generator) -> Tensor:
        archs = torch.tensor([list(self.container)])
        return self.family.flatten(self.family.init(archs, self.container, generator))[0]

    def forward(self, flat: Tensor, x: Tensor) -> Tensor:
        return self.family.forward(self.family.unflatten(flat, self.container), x, self.archs)

    def output_mask(self, batch: int) -> Tensor | None:
        return None if self.archs is None else self.family.output_mask(self.archs, self.container)

    def flops_per_sample(self) -> float:
        """2 × the weights that multiply an input (biases excluded), at the container."""
        shapes = self.family.param_shapes(self.container)
        return float(sum(2 * math.prod(s) for s in shapes.values() if len(s) > 1))


def build_net(spec: Any, family: TargetFamily, task: Task, container: Sequence[int]) -> FunctionalNet:
    """``"family"``: the run's target family at its container; a list of widths: :class:`StackedMLP`."""
    if spec in (None, "family"):
        return FamilyNet(family, task, container)
    if isinstance(spec, (list, tuple)):
        return StackedMLP(spec, task)
    raise ConfigError(f"baselines.maml.net must be 'family' or a list of widths like [1, 40, 40, 1], got {spec!r}")
