"""The seed's example-3 target, made a task family: y_j = a_j·sin(Σ_i x_i + φ_j).

The seed regressed 5 outputs on one column ``sin(Σx)`` (broadcast) with x ~ N(0, I_10): then
Σx has variance 10 and ``sin(Σx)`` is almost uncorrelated with any linear function of x, and
every task is the same. Here each output j has its own amplitude and phase (the descriptor), and
x ~ N(0, x_std²) with x_std = 1/sqrt(d) by default, so that Σx ~ N(0, 1) and a linear target
has something task-specific to fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task, TaskBatch, check_range, uniform


@register("task")
class SinSumTask(Task):
    name = "sinsum"

    def __init__(
        self,
        n_support: int = 32,
        n_query: int = 64,
        amplitude: Sequence[float] = (0.5, 2.0),
        phase: Sequence[float] = (0.0, math.pi),
        x_std: float | None = None,
    ) -> None:
        super().__init__(n_support, n_query)
        self.amplitude = check_range("task.amplitude", amplitude)
        self.phase = check_range("task.phase", phase)
        self.x_std = x_std

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        for arch in archs:
            if len(family.input_shape(arch)) != 1 or len(family.output_shape(arch)) != 1:
                raise self._incompatible(
                    family,
                    f"sinsum needs vector inputs and vector outputs, but architecture "
                    f"{family.arch_to_dict(arch)} has input shape {family.input_shape(arch)} "
                    f"and output shape {family.output_shape(arch)}",
                )

    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int:
        return 2 * family.output_shape(container)[0]

    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        b = archs.shape[0]
        (d,) = family.input_shape(container)
        (m,) = family.output_shape(container)
        std = self.x_std if self.x_std is not None else 1.0 / math.sqrt(d)
        mask = family.output_mask(archs, container)
        mask = torch.ones(b, m) if mask is None else mask.to(torch.get_default_dtype())
        amp = uniform(*self.amplitude, (b, 1, m), generator) * mask.unsqueeze(1)
        phase = uniform(*self.phase, (b, 1, m), generator) * mask.unsqueeze(1)
        xs = std * torch.randn((b, self.n_support, d), generator=generator)
        xq = std * torch.randn((b, self.n_query, d), generator=generator)

        def target(x: Tensor) -> Tensor:
            return amp * torch.sin(x.sum(-1, keepdim=True) + phase)

        return TaskBatch(torch.cat([amp, phase], dim=2).view(b, 2 * m), xs, target(xs), xq, target(xq))

    def describe(self) -> dict:
        return {**super().describe(), "amplitude": self.amplitude, "phase": self.phase, "x_std": self.x_std}
