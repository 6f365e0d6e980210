"""What a target is trained on: a family of tasks, each with a descriptor and support/query data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hyperpred.config_schema import check_value
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


def _masked_log_probs(logits: Tensor, out_mask: Tensor | None) -> Tensor:
    """Log-softmax over the classes a target really has; padded classes get probability 0."""
    if out_mask is not None:
        logits = logits.masked_fill(~out_mask.unsqueeze(1).bool(), torch.finfo(logits.dtype).min / 4)
    return torch.log_softmax(logits, dim=-1)


def masked_cross_entropy(logits: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
    """Per-target mean cross-entropy ``[B]``: ``logits``/``y`` are ``[B, n, K]``, ``y`` one-hot (or soft)."""
    logp = _masked_log_probs(logits, out_mask)
    return -(y * logp).sum(-1).mean(1)


def masked_accuracy(logits: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
    """Per-target fraction ``[B]`` of samples whose arg-max class (among real classes) is the label's."""
    pred = _masked_log_probs(logits, out_mask).argmax(-1)
    return (pred == y.argmax(-1)).to(logits.dtype).mean(1)


class Task(ABC):
    """A distribution over tasks. Subclasses sample descriptors and data in batches."""

    name: str = ""
    #: Classification tasks carry one-hot labels ``[B, n, K]`` and use cross-entropy and accuracy.
    classification: bool = False

    def __init__(self, n_support: int = 100, n_query: int = 100) -> None:
        for key, value in (("n_support", n_support), ("n_query", n_query)):
            check_value(f"task.{key}", value)
        self.n_support = n_support
        self.n_query = n_query

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        """Raise :class:`ConfigError` naming ``target`` and ``task`` when they cannot go together."""

    @abstractmethod
    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int: ...

    @abstractmethod
    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        """Sample one task per row of ``archs`` (``[B, A]``), padded to ``container``."""

    def loss(self, pred: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
        """Per-target task loss ``[B]``: MSE over real outputs, or cross-entropy over real classes."""
        if self.classification:
            return masked_cross_entropy(pred, y, out_mask)
        return masked_mse(pred, y, out_mask)

    def accuracy(self, pred: Tensor, y: Tensor, out_mask: Tensor | None = None) -> Tensor:
        """Per-target accuracy ``[B]``; only classification tasks have one."""
        if not self.classification:
            raise ValueError(f"task '{self.name}' is a regression task: it has no accuracy")
        return masked_accuracy(pred, y, out_mask)

    def split_groups(self, descriptor: Tensor) -> Tensor | None:
        """Group id ``[N]`` per task, or None. Tasks of one group land in the same data split, so
        that held-out tasks are new groups (e.g. unseen digit pairs), not new samples of old ones."""
        return None

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
    """``(low, high)`` of a ``[low, high]`` config value, checked by the schema's rule of ``key``."""
    check_value(key, bounds)
    return float(bounds[0]), float(bounds[1])
