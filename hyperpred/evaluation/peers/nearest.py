"""The "take the nearest training checkpoint" baseline: by conditioning features, and by function space.

Function space: the training target with the lowest loss on the test task's *support* set (the
only data a user has at prediction time), found by running all training targets on every test
task's support inputs in chunks; its query loss is then the baseline's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.evaluation.peers.outputs import outputs_on, test_chunks
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task


def nearest_by_features(train_features: Tensor, test_features: Tensor) -> Tensor:
    """Index ``[T]`` of the nearest training row (Euclidean, in the given, e.g. standardized, units)."""
    return torch.cdist(test_features, train_features).argmin(1)


def support_losses(
    family: TargetFamily,
    task: Task,
    container: Sequence[int],
    train_flat: Tensor,
    train_archs: Tensor,
    support_x: Tensor,
    support_y: Tensor,
) -> Tensor:
    """``[N, t]``: loss of each training target on each test task's support set."""
    out = outputs_on(family, container, train_flat, train_archs, support_x)  # [N, t, n, *out]
    n_train, t = out.shape[:2]
    mask = family.output_mask(train_archs, container)
    mask = None if mask is None else mask.repeat_interleave(t, 0)
    y = support_y.unsqueeze(0).expand(n_train, *support_y.shape).to(out.dtype)
    return task.loss(out.flatten(0, 1), y.flatten(0, 1), mask).view(n_train, t)


def nearest_by_function(
    family: TargetFamily,
    task: Task,
    container: Sequence[int],
    train_flat: Tensor,
    train_archs: Tensor,
    support_x: Tensor,
    support_y: Tensor,
    chunk: int | None = None,
) -> Tensor:
    """Index ``[T]`` of the training target with the lowest loss on each test task's support set."""
    n_train, (n_test, n_support) = train_flat.shape[0], support_x.shape[:2]
    out = torch.empty(n_test, dtype=torch.long)
    with torch.no_grad():
        for s in test_chunks(n_train, n_test, n_support, chunk):
            losses = support_losses(family, task, container, train_flat, train_archs, support_x[s], support_y[s])
            out[s] = losses.argmin(0)
    return out
