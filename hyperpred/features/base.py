"""Conditioning features: what the predictor is told about a target's architecture and task.

Every feature is computable *at prediction time* from the architecture and the task's support
data alone; none reads the trained target (the seed's example 3 did, which is circular). The
features that look at data do so through a fixed *probe*: the family's shared init at a fixed
architecture, identical for every task, so that differences in its activations or gradients
come from the task alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.seeding import shared_init
from hyperpred.targets.base import Params, TargetFamily, arch_tensor
from hyperpred.tasks.base import Task

#: Keys a feature may read from a batch: ``archs`` [B, A], ``support_x``, ``support_y``,
#: ``descriptor`` [B, D] (oracle only) and ``index`` [B] (noise only).
FeatureBatch = Mapping[str, Tensor]


@dataclass
class FeatureContext:
    """What features need to know about the run: family, task, container and the probe."""

    family: TargetFamily
    task: Task
    container: tuple[int, ...]
    probe_arch: tuple[int, ...]
    probe_params: Params  # [1, *shape] at probe_arch

    @classmethod
    def create(
        cls,
        family: TargetFamily,
        task: Task,
        container: Sequence[int],
        probe_arch: Sequence[int] | None,
        probe_seed: int,
    ) -> FeatureContext:
        probe = tuple(probe_arch) if probe_arch is not None else tuple(container)
        params = shared_init(family, arch_tensor([probe]), probe, probe_seed)
        return cls(family, task, tuple(container), probe, params)

    def probe_batch(self, batch_size: int) -> Params:
        return {k: v.expand(batch_size, *v.shape[1:]) for k, v in self.probe_params.items()}


class Feature(ABC):
    """One block of the conditioning vector."""

    name: str = ""
    #: True when the feature reads the task's true parameters: never available for a real task.
    is_oracle: bool = False
    #: True when the feature encodes the architecture (its widths): ``loss.width_augment`` changes those.
    describes_architecture: bool = False

    def setup(self, ctx: FeatureContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def __call__(self, batch: FeatureBatch) -> Tensor:
        """``[B, dim]`` features for a batch of tasks."""

    def describe(self) -> dict:
        return {"name": self.name}


class FeatureSet:
    """An ordered combination of features; the predictor's input is their concatenation."""

    def __init__(self, features: Mapping[str, Feature], ctx: FeatureContext) -> None:
        self.features = dict(features)
        for feature in self.features.values():
            feature.setup(ctx)
        self.ctx = ctx

    @property
    def dims(self) -> dict[str, int]:
        return {name: f.dim() for name, f in self.features.items()}

    @property
    def dim(self) -> int:
        return sum(self.dims.values())

    @torch.no_grad()
    def compute(self, batch: FeatureBatch, chunk: int = 512) -> Tensor:
        """Features for every row of ``batch``, in chunks so that probe activations stay small."""
        n = batch["archs"].shape[0]
        parts = []
        for start in range(0, n, chunk):
            rows = {k: v[start : start + chunk] for k, v in batch.items()}
            blocks = [f(rows).to(torch.get_default_dtype()) for f in self.features.values()]
            parts.append(torch.cat(blocks, dim=1) if blocks else torch.zeros(len(rows["archs"]), 0))
        return torch.cat(parts) if parts else torch.zeros(0, self.dim)
