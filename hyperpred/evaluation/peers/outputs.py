"""Run every training target on every test task's inputs, in chunks of test tasks (one batched forward each)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import Tensor

from hyperpred.targets.base import TargetFamily

#: Samples × training targets per forward: bounds the working memory of one chunk.
ELEMENTS_PER_CHUNK = 1_000_000


def test_chunks(n_train: int, n_test: int, n_samples: int, chunk: int | None = None) -> Iterator[slice]:
    size = chunk or max(1, ELEMENTS_PER_CHUNK // max(1, n_train * n_samples))
    size = max(1, min(size, max(1, ELEMENTS_PER_CHUNK // max(1, n_train * n_samples))))
    for start in range(0, n_test, size):
        yield slice(start, min(n_test, start + size))


def outputs_on(family: TargetFamily, container: Sequence[int], flat: Tensor, archs: Tensor, x: Tensor) -> Tensor:
    """``[N, t, n, *out]``: each of the N targets (``flat [N, P]``) on each of t tasks' inputs ``x [t, n, *in]``."""
    n_targets, (t, n) = flat.shape[0], x.shape[:2]
    xs = x.reshape(1, t * n, *x.shape[2:]).expand(n_targets, *([-1] * (x.dim() - 1)))
    out = family.forward(family.unflatten(flat, container), xs, archs)
    return out.reshape(n_targets, t, n, *out.shape[2:])
