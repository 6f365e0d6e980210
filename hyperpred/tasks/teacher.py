"""Fit a random *teacher* network of the same family: the seed's setting for examples 1 and 2.

The descriptor is the teacher's own (padded, flattened) parameters. Unlike the seed, the teacher
is part of the task sample, so features computed from the support data can tell teachers apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.config_schema import check_value
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task, TaskBatch, check_range, uniform


@register("task")
class TeacherTask(Task):
    name = "teacher"

    def __init__(
        self,
        n_support: int = 100,
        n_query: int = 100,
        x_dist: str = "uniform",
        x_range: Sequence[float] = (-1.0, 1.0),
        teacher_scale: float = 1.0,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(n_support, n_query)
        check_value("task.x_dist", x_dist)
        self.x_dist = x_dist
        self.x_range = check_range("task.x_range", x_range)
        self.teacher_scale = float(teacher_scale)
        self.noise_std = float(noise_std)

    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int:
        return family.num_params(container)

    def _inputs(
        self, family: TargetFamily, container: Sequence[int], b: int, n: int, generator: torch.Generator
    ) -> Tensor:
        shape = (b, n, *family.input_shape(container))
        if self.x_dist == "normal":
            return torch.randn(shape, generator=generator)
        return uniform(*self.x_range, shape, generator)

    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        b = archs.shape[0]
        teacher = {k: v * self.teacher_scale for k, v in family.init(archs, container, generator).items()}
        xs = self._inputs(family, container, b, self.n_support, generator)
        xq = self._inputs(family, container, b, self.n_query, generator)
        ys = family.forward(teacher, xs, archs)
        yq = family.forward(teacher, xq, archs)
        if self.noise_std > 0:
            ys = ys + self.noise_std * torch.randn(ys.shape, generator=generator)
            yq = yq + self.noise_std * torch.randn(yq.shape, generator=generator)
        return TaskBatch(family.flatten(teacher), xs, ys, xq, yq)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "x_dist": self.x_dist,
            "x_range": self.x_range,
            "teacher_scale": self.teacher_scale,
            "noise_std": self.noise_std,
        }
