"""Batches of zoo rows that are the same for one process and for any number of DDP ranks.

Why not ``RandomSampler`` + ``BatchSampler``: their order comes from the global torch RNG, which a
resumed run does not restore, and under DDP Lightning would swap the sampler for a
``DistributedSampler`` that yields single rows (our dataset gathers whole batches).

:class:`GlobalBatchSampler` shuffles with a generator seeded by ``(seed, epoch)``, cuts the
permutation into *global* batches of ``batch_size`` rows, and gives rank ``r`` of ``W`` the rows
``r, r + W, ...`` of each global batch. Averaging gradients over ranks (DDP) then reproduces the
single-process step on the same global batch. A global batch with fewer rows than a multiple of
``W`` is padded by repeating its first rows so that every rank steps the same number of times
(no rank waits forever in a collective). The datamodule shards only the training split this
way; every rank evaluates whole val/test splits, so evaluation needs no padding.
It subclasses ``DistributedSampler`` only so that Lightning leaves it in place and calls
``set_epoch`` on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler, SequentialSampler

from hyperpred.errors import ConfigError


class GlobalBatchSampler(DistributedSampler):
    """Yields lists of row indices: this rank's share of each global batch (see module doc)."""

    def __init__(
        self, num_rows: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_rows < 1:
            raise ConfigError("a data split is empty: raise zoo.num_targets or the split fractions")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        # DistributedSampler's own state is not used for iteration; fill it so that its attributes stay truthful.
        self.num_replicas, self.rank, self.shuffle, self.seed, self.epoch, self.drop_last = (
            world_size,
            rank,
            shuffle,
            seed,
            0,
            False,
        )
        self.num_rows, self.batch_size = num_rows, batch_size
        self.num_samples = sum(len(b) for b in self._global_batches(torch.arange(num_rows)))
        self.total_size = self.num_samples

    def _global_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for batch in order.split(self.batch_size):
            pad = -len(batch) % self.num_replicas
            if pad:
                batch = torch.cat([batch, batch.repeat(pad // len(batch) + 1)[:pad]])
            out.append(batch[self.rank :: self.num_replicas])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_rows, generator=g)
        else:
            order = torch.arange(self.num_rows)
        for batch in self._global_batches(order):
            yield batch.tolist()

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)


class SequentialBatchSampler(SequentialSampler):
    """Consecutive batches of rows, always the same: for ``trainer.overfit_batches``.

    Lightning replaces any sampler that is not a ``SequentialSampler`` when overfitting, with one
    that yields single rows; this one already is one, so the batches reach the dataset whole.
    """

    def __init__(self, num_rows: int, batch_size: int) -> None:
        self.num_rows, self.batch_size = num_rows, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.num_rows, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.num_rows)))

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)
