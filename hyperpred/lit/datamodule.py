"""The zoo as a LightningDataModule: build or load it once, compute features, split by task."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError
from hyperpred.features.base import FeatureSet
from hyperpred.lit.sampler import GlobalBatchSampler, SequentialBatchSampler
from hyperpred.targets.base import arch_tensor
from hyperpred.zoo.builder import Zoo, ZooBuilder

log = logging.getLogger(__name__)

#: Zoo tensors a batch carries (besides the computed ``features``, ``mask`` and ``mean_params``).
BATCH_KEYS = (
    "index",
    "archs",
    "params",
    "init",
    "support_x",
    "support_y",
    "query_x",
    "query_y",
    "descriptor",
    "query_loss",
    "init_query_loss",
)


class TensorDictDataset(Dataset):
    """Rows of a dict of equally long tensors; indexing with a list of rows gathers a whole batch."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __getitem__(self, rows: Sequence[int] | Tensor) -> dict[str, Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return {k: v[rows] for k, v in self.tensors.items()}


def masked_mean_std(x: Tensor, mask: Tensor, min_std: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Per-column mean and std over the rows where ``mask`` is set (0 and 1 for empty columns)."""
    m = mask.to(x.dtype)
    count = m.sum(0)
    mean = (x * m).sum(0) / count.clamp_min(1)
    var = ((x - mean).square() * m).sum(0) / count.clamp_min(1)
    std = torch.where(count > 0, var.sqrt().clamp_min(min_std), torch.ones_like(var))
    return mean, std


def group_mean(values: Tensor, mask: Tensor, groups: Tensor, query: Tensor) -> Tensor:
    """Mean of ``values`` rows per group (rows of ``groups``), looked up for each row of ``query``.

    Rows of ``query`` whose group never occurs get NaN: there is no zoo mean for an unseen arch.
    """
    unique, inverse = torch.unique(groups, dim=0, return_inverse=True)
    m = mask.to(values.dtype)
    sums = torch.zeros(len(unique), values.shape[1]).index_add_(0, inverse, values * m)
    counts = torch.zeros(len(unique), values.shape[1]).index_add_(0, inverse, m)
    means = sums / counts.clamp_min(1)
    match = (query.unsqueeze(1) == unique.unsqueeze(0)).all(-1)  # [Q, U]
    found = match.any(1)
    out = means[match.float().argmax(1)]
    out[~found] = float("nan")
    return out


class ZooDataModule(pl.LightningDataModule):
    """Builds/loads the zoo in ``prepare_data`` (rank 0) and splits it by task in ``setup``.

    Splits: ``train``/``val``/``test`` partition the tasks of the training architectures;
    ``test_unseen_arch`` holds every target whose architecture is listed as unseen.
    """

    def __init__(
        self,
        builder: ZooBuilder,
        features: FeatureSet,
        unseen_archs: Sequence[Sequence[int]] = (),
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        shuffle_seed: int | None = None,
        canonicalize: str | None = None,
        fresh_tasks: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
            check_value(key, value)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction + test_fraction}")
        check_value("data.batch_size", batch_size)
        self.builder = builder
        self.features = features
        self.unseen_archs = [tuple(a) for a in unseen_archs]
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.fresh_tasks = bool(fresh_tasks)  # train on newly sampled tasks every step (functional loss only)
        self.canonicalize = canonicalize  # sort hidden units of the targets by this key (loss.canonicalize)
        # Batch order depends on (shuffle_seed, epoch) only, so a resumed run replays it exactly.
        self.shuffle_seed = int(torch.initial_seed() if shuffle_seed is None else shuffle_seed) % 2**31
        self.zoo: Zoo | None = None
        self.build_stats = None
        self.splits: dict[str, dict[str, Tensor]] = {}
        self.stats: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        if self.zoo is None:  # Lightning calls this again inside fit(); the zoo is already here
            self.zoo, self.build_stats = self.builder.get()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        zoo = self.zoo if self.zoo is not None else self.builder.load()
        self.zoo = zoo
        t = zoo.tensors
        family, container = self.builder.family, zoo.container
        features = self.features.compute({k: t[k] for k in ("archs", "support_x", "support_y", "descriptor", "index")})
        mask = family.flat_mask(t["archs"], container)
        if self.canonicalize:
            from hyperpred.symmetry import canonicalize_flat

            t = {**t, "params": canonicalize_flat(family, t["params"], t["archs"], container, self.canonicalize)}
        rows = self._split_rows(t["archs"], t["finite"], self.builder.task.split_groups(t["descriptor"]))
        train = rows["train"]
        f_mean, f_std = masked_mean_std(features[train], torch.ones_like(features[train], dtype=torch.bool))
        p_mean, p_std = masked_mean_std(t["params"][train], mask[train])
        self.stats = {"feature_mean": f_mean, "feature_std": f_std, "param_mean": p_mean, "param_std": p_std}
        self.stats["arch_min"], self.stats["arch_max"] = (
            t["archs"][train].min(0).values,
            t["archs"][train].max(0).values,
        )
        for key in ("support_x", "support_y"):  # per-coordinate moments, for predictors that read the support set
            flat = t[key][train].flatten(2).flatten(0, 1).to(torch.get_default_dtype())
            self.stats[f"{key}_mean"], self.stats[f"{key}_std"] = masked_mean_std(
                flat, torch.ones_like(flat, dtype=torch.bool)
            )
        mean_params = group_mean(t["params"][train], mask[train], t["archs"][train], t["archs"])
        for name, idx in rows.items():
            split = {k: t[k][idx] for k in BATCH_KEYS}
            split.update(features=features[idx], mask=mask[idx], mean_params=mean_params[idx])
            self.splits[name] = split
        sizes = ", ".join(f"{k}={len(v)}" for k, v in rows.items())
        log.info(
            "Zoo splits by task: %s (feature dim %d, %d params per target)", sizes, features.shape[1], mask.shape[1]
        )

    def _split_rows(self, archs: Tensor, finite: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        """Random split by task; with ``groups`` (see ``Task.split_groups``) whole groups stay together."""
        unseen = torch.zeros(len(archs), dtype=torch.bool)
        if self.unseen_archs:
            unseen = (archs.unsqueeze(1) == arch_tensor(self.unseen_archs).unsqueeze(0)).all(-1).any(1)
        seen = torch.nonzero(finite & ~unseen).squeeze(1)
        g = torch.Generator().manual_seed(self.split_seed)
        seen = seen[torch.randperm(len(seen), generator=g)]
        n_test = max(1, round(self.test_fraction * len(seen)))
        n_val = max(1, round(self.val_fraction * len(seen)))
        if groups is not None:
            # order rows by a random rank of their group, then move each cut to a group boundary
            uniq, inverse = torch.unique(groups[seen], return_inverse=True)
            rank = torch.randperm(len(uniq), generator=g)[inverse]
            seen = seen[torch.argsort(rank, stable=True)]
            ends = torch.cumsum(torch.bincount(rank, minlength=len(uniq)), 0)
            n_test = int(ends[torch.searchsorted(ends, n_test)])
            n_val = int(ends[min(int(torch.searchsorted(ends, n_test + n_val)), len(ends) - 1)]) - n_test
            if n_val < 1 or len(seen) - n_test - n_val < 1:
                raise ConfigError(
                    f"only {len(uniq)} task groups: too few to split into train/val/test by group; lower "
                    "data.val_fraction/data.test_fraction"
                )
            log.info("Split by task group: %d groups, test=%d rows, val=%d rows", len(uniq), n_test, n_val)
        if len(seen) - n_test - n_val < 1:
            raise ConfigError(f"zoo.num_targets is too small: {len(seen)} usable targets leave none for training")
        rows = {
            "train": seen[n_test + n_val :].sort().values,
            "val": seen[n_test : n_test + n_val].sort().values,
            "test": seen[:n_test].sort().values,
        }
        if self.unseen_archs:
            rows["test_unseen_arch"] = torch.nonzero(finite & unseen).squeeze(1)
        return rows

    # ------------------------------------------------------------------ data loaders
    @property
    def in_dim(self) -> int:
        return self.features.dim

    @property
    def out_dim(self) -> int:
        return self.builder.family.num_params(self.zoo.container)

    @property
    def test_split_names(self) -> list[str]:
        return [
            name for name in ("test", "test_unseen_arch") if name in self.splits and len(self.splits[name]["archs"])
        ]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = TensorDictDataset(self.splits[split])
        # DDP shards training only. Every rank evaluates the whole val/test split (forward passes, small):
        # val metrics then equal one process's exactly, and the module drops the test copies by index.
        sharded = self.trainer is not None and split == "train"
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if sharded else (0, 1)
        if self.trainer is not None and self.trainer.overfit_batches:  # the same first batches every epoch
            sampler = SequentialBatchSampler(len(dataset), self.batch_size)
        else:
            sampler = GlobalBatchSampler(len(dataset), self.batch_size, shuffle, self.shuffle_seed, rank, world)
        # pinned host memory: the copy of each batch to a CUDA device can overlap the previous step
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, sampler=sampler, batch_size=None, pin_memory=on_cuda)

    def train_dataloader(self) -> DataLoader:
        if self.fresh_tasks:
            from hyperpred.lit.fresh import FreshTaskDataset

            module = self.trainer.lightning_module if self.trainer is not None else None
            if module is not None and getattr(getattr(module, "objective", None), "weight", 0):
                raise ConfigError(
                    "data.fresh_tasks=true has no weight labels: set loss.weight=0 (e.g. loss=functional)"
                )
            dataset = FreshTaskDataset(
                self.splits["train"],
                self.builder.family,
                self.builder.task,
                self.zoo.container,
                self.features,
                self.shuffle_seed,
            )
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
            sampler = GlobalBatchSampler(len(dataset), self.batch_size, True, self.shuffle_seed, rank, world)
            return DataLoader(dataset, sampler=sampler, batch_size=None)
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(name, shuffle=False) for name in self.test_split_names]
