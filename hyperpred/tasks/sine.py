"""Sine regression: y = a·sin(x + φ), the standard few-shot regression benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task, TaskBatch, check_range, uniform


@register("task")
class SineTask(Task):
    name = "sine"

    def __init__(
        self,
        n_support: int = 100,
        n_query: int = 100,
        amplitude: Sequence[float] = (0.1, 5.0),
        phase: Sequence[float] = (0.0, math.pi),
        x_range: Sequence[float] = (-5.0, 5.0),
    ) -> None:
        super().__init__(n_support, n_query)
        self.amplitude = check_range("task.amplitude", amplitude)
        self.phase = check_range("task.phase", phase)
        self.x_range = check_range("task.x_range", x_range)

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        for arch in archs:
            if family.input_shape(arch) != (1,) or family.output_shape(arch) != (1,):
                raise self._incompatible(
                    family,
                    f"sine tasks map a scalar x to a scalar y, but architecture {family.arch_to_dict(arch)} "
                    f"maps inputs of shape {family.input_shape(arch)} to outputs of shape {family.output_shape(arch)}",
                )

    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int:
        return 2

    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        b = archs.shape[0]
        amp = uniform(*self.amplitude, (b, 1, 1), generator)
        phase = uniform(*self.phase, (b, 1, 1), generator)
        xs = uniform(*self.x_range, (b, self.n_support, 1), generator)
        xq = uniform(*self.x_range, (b, self.n_query, 1), generator)
        return TaskBatch(
            descriptor=torch.cat([amp, phase], dim=1).view(b, 2),
            support_x=xs,
            support_y=amp * torch.sin(xs + phase),
            query_x=xq,
            query_y=amp * torch.sin(xq + phase),
        )

    def describe(self) -> dict:
        return {**super().describe(), "amplitude": self.amplitude, "phase": self.phase, "x_range": self.x_range}
