"""What a target is trained on: a family of tasks, each with a descriptor and support/query data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.targets.base import TargetFamily


@dataclass
class TaskBatch:
    """A batch of B tasks. ``descriptor`` holds each task's true parameters (an oracle)."""

    descriptor: Tensor  # [B, D]
    support_x: Tensor  # [B, n_support, *input]
    support_y: Tensor  # [B, n_support, *output]
    query_x: Tensor  # [B, n_query, *input]
    query_y: Tensor  # [B, n_query, *output]

    def as_dict(self) -> dict[str, Tensor]:
        return asdict(self)


def masked_mse(pred: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
    """Per-target mean squared error ``[B]`` over samples and the target's real outputs only."""
    err = (pred - y).square()
    if out_mask is None:
        return err.flatten(1).mean(1)
    m = out_mask.unsqueeze(1).to(err.dtype).expand_as(err)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


class Task(ABC):
    """A distribution over tasks. Subclasses sample descriptors and data in batches."""

    name: str = ""

    def __init__(self, n_support: int = 100, n_query: int = 100) -> None:
        for key, value in (("n_support", n_support), ("n_query", n_query)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"task.{key} must be a positive integer, got {value!r}")
        self.n_support = n_support
        self.n_query = n_query

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        """Raise :class:`ConfigError` naming ``target`` and ``task`` when they cannot go together."""

    @abstractmethod
    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int: ...

    @abstractmethod
    def sample(self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator) -> TaskBatch:
        """Sample one task per row of ``archs`` (``[B, A]``), padded to ``container``."""

    def loss(self, pred: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
        """Per-target task loss ``[B]``; regression tasks use MSE over real outputs."""
        return masked_mse(pred, y, out_mask)

    def describe(self) -> dict:
        return {"name": self.name, "n_support": self.n_support, "n_query": self.n_query}

    def _incompatible(self, family: TargetFamily, why: str) -> ConfigError:
        return ConfigError(
            f"task={self.name} does not fit target={family.name}: {why}. "
            f"Choose another task (keys: task, target) or another target family."
        )


def uniform(low: float, high: float, shape: Sequence[int], generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=generator)


def check_range(key: str, bounds: Sequence[float]) -> tuple[float, float]:
    if len(bounds) != 2 or not float(bounds[0]) <= float(bounds[1]):
        raise ConfigError(f"{key} must be [low, high] with low <= high, got {list(bounds)}")
    return float(bounds[0]), float(bounds[1])
