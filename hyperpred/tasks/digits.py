"""Classify handwritten digits: scikit-learn's bundled 8×8 images (nothing is downloaded).

A task is an ordered choice of K digit classes (a *pair* for K = 2): label j means "digit
``classes[j]``". K is the target's number of outputs, so one zoo may mix pairs and larger
subsets. Support and query images come from two disjoint halves of the data set, so query
accuracy measures generalization to unseen images. Every task's support set is balanced
(``n_support / K`` images per class, drawn without replacement), which is what "a few labelled
examples per class" means. Tasks are grouped by their *set* of classes: with the data split by
group, held-out tasks are pairs of digits that no training task contained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task, TaskBatch

NUM_CLASSES = 10
IMAGE_PIXELS = 64


def digits_arrays(x_scale: float = 1 / 16) -> tuple[Tensor, Tensor]:
    """All 1797 digit images as ``[N, 64]`` floats (pixel value × ``x_scale``) and their labels ``[N]``."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: reads a local file

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.get_default_dtype()) * x_scale
    return x, torch.as_tensor(data.target, dtype=torch.long)


@dataclass
class _Pool:
    """Images of one half of the data set, indexed by class: ``table[c, j]`` is class c's j-th image."""

    x: Tensor  # [N, 64]
    table: Tensor  # [10, max_count] indices into x (padding repeats index 0)
    counts: Tensor  # [10]

    @classmethod
    def create(cls, x: Tensor, labels: Tensor) -> _Pool:
        counts = torch.bincount(labels, minlength=NUM_CLASSES)
        order = torch.argsort(labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        j = torch.arange(int(counts.max()))
        flat = (starts.unsqueeze(1) + j).clamp_max(len(labels) - 1)
        table = torch.where(j < counts.unsqueeze(1), order[flat], torch.zeros_like(flat))
        return cls(x, table, counts)

    def draw(self, classes: Tensor, k: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` balanced samples per task: image rows ``[B, n]`` and within-task labels ``[B, n]``.

        Sample i of task b has label ``i mod k_b`` and is that class's ``i div k_b``-th image in
        a per-task random order of the class, so no image repeats within a task.
        """
        b, kmax = classes.shape
        i = torch.arange(n).unsqueeze(0)
        labels, rank = i % k.unsqueeze(1), i // k.unsqueeze(1)  # [B, n]
        digit = classes.gather(1, labels)  # [B, n]
        need = int(rank.max()) + 1
        counts = self.counts[classes.clamp_min(0)]  # [B, K]
        keys = torch.rand((b, kmax, self.table.shape[1]), generator=generator)
        keys = keys.masked_fill(torch.arange(self.table.shape[1]) >= counts.unsqueeze(2), 2.0)
        order = keys.argsort(-1)[..., :need]  # [B, K, need] random positions inside each class
        pos = order[torch.arange(b).unsqueeze(1), labels, rank]
        return self.table[digit, pos], labels


@register("task")
class DigitsTask(Task):
    name = "digits"
    classification = True

    def __init__(
        self,
        n_support: int = 20,
        n_query: int = 100,
        classes: Sequence[int] = tuple(range(NUM_CLASSES)),
        query_fraction: float = 0.5,
        pool_seed: int = 0,
        x_scale: float = 1 / 16,
    ) -> None:
        super().__init__(n_support, n_query)
        classes = [int(c) for c in classes]
        if len(set(classes)) != len(classes) or len(classes) < 2 or not all(0 <= c < NUM_CLASSES for c in classes):
            raise ConfigError(f"task.classes must be at least 2 distinct digits in 0..9, got {classes}")
        check_value("task.query_fraction", query_fraction)
        check_value("task.x_scale", x_scale)
        self.classes = classes
        self.query_fraction = float(query_fraction)
        self.pool_seed = int(pool_seed)
        self.x_scale = float(x_scale)
        x, labels = digits_arrays(self.x_scale)
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.pool_seed))
        n_q = round(self.query_fraction * len(labels))
        self.query_pool = _Pool.create(x[perm[:n_q]], labels[perm[:n_q]])
        self.support_pool = _Pool.create(x[perm[n_q:]], labels[perm[n_q:]])

    def _num_classes(self, family: TargetFamily, arch: Sequence[int]) -> int:
        out = family.output_shape(arch)
        in_shape = family.input_shape(arch)
        if len(out) != 1 or math.prod(in_shape) != IMAGE_PIXELS:
            raise self._incompatible(
                family,
                f"digits maps 8x8 images ({IMAGE_PIXELS} pixels) to class logits, but architecture "
                f"{family.arch_to_dict(arch)} takes inputs of shape {in_shape} and gives outputs of shape {out}",
            )
        return out[0]

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        for arch in archs:
            k = self._num_classes(family, arch)
            if not 2 <= k <= len(self.classes):
                why = (
                    f"architecture {family.arch_to_dict(arch)} has {k} outputs; a digits task has "
                    f"2..{len(self.classes)} classes (task.classes={self.classes})"
                )
                raise self._incompatible(family, why)
            for key, n, pool in (
                ("n_support", self.n_support, self.support_pool),
                ("n_query", self.n_query, self.query_pool),
            ):
                if n < k:
                    raise ConfigError(
                        f"task.{key}={n} is smaller than the {k} classes of architecture {family.arch_to_dict(arch)}"
                    )
                smallest = int(pool.counts[self.classes].min())
                if -(-n // k) > smallest:
                    raise ConfigError(
                        f"task.{key}={n} needs {-(-n // k)} images per class for {k} classes, but the pool has only "
                        f"{smallest} of some class"
                    )

    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int:
        return family.output_shape(container)[0]

    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        b = archs.shape[0]
        kmax = self._num_classes(family, container)
        mask = family.output_mask(archs, container)
        k = mask.sum(1) if mask is not None else torch.full((b,), kmax)
        allowed = torch.tensor(self.classes)
        pick = torch.rand((b, len(allowed)), generator=generator).argsort(1)[:, :kmax]
        classes = allowed[pick]  # [B, K]: label j of task b is digit classes[b, j]
        classes = torch.where(torch.arange(kmax) < k.unsqueeze(1), classes, torch.full_like(classes, -1))
        in_shape = family.input_shape(container)

        def draw(pool: _Pool, n: int) -> tuple[Tensor, Tensor]:
            rows, labels = pool.draw(classes, k, n, generator)
            x = pool.x[rows].reshape(b, n, *in_shape)
            return x, torch.nn.functional.one_hot(labels, kmax).to(x.dtype)

        xs, ys = draw(self.support_pool, self.n_support)
        xq, yq = draw(self.query_pool, self.n_query)
        return TaskBatch(classes.to(xs.dtype), xs, ys, xq, yq)

    def split_groups(self, descriptor: Tensor) -> Tensor:
        """The *set* of digits of each task: tasks (3, 8) and (8, 3) share a group."""
        return torch.unique(descriptor.sort(1).values, dim=0, return_inverse=True)[1]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "classes": self.classes,
            "query_fraction": self.query_fraction,
            "pool_seed": self.pool_seed,
            "x_scale": self.x_scale,
        }
