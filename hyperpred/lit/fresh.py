"""``data.fresh_tasks``: training batches of newly sampled tasks instead of the zoo's, as MAML and the CNP see.

With a functional loss the predictor needs no weight labels, so every step can draw new tasks from
the task distribution. A batch keeps the architectures of the training rows the sampler picked
(same arch mix as the zoo) and is seeded by those rows, whose order the sampler reshuffles every
epoch: batches differ from step to step and from epoch to epoch, yet a resumed run replays them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hyperpred.features.base import FeatureSet
from hyperpred.seeding import stable_seed
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task


class FreshTaskDataset(Dataset):
    """Indexing with a batch of training rows returns that many new tasks (features computed, no labels)."""

    def __init__(
        self,
        train: dict[str, Tensor],
        family: TargetFamily,
        task: Task,
        container: Sequence[int],
        features: FeatureSet,
        seed: int,
    ) -> None:
        self.archs, self.family, self.task, self.container = train["archs"], family, task, tuple(container)
        self.features, self.seed = features, seed

    def __len__(self) -> int:
        return len(self.archs)

    def __getitem__(self, rows: Sequence[int] | Tensor) -> dict[str, Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        g = torch.Generator().manual_seed(stable_seed(self.seed, "fresh", *rows.tolist()) % 2**63)
        archs = self.archs[rows]
        b = self.task.sample(self.family, archs, self.container, g)
        index = -1 - rows  # not a zoo row
        batch = {"archs": archs, "index": index, **b.as_dict()}
        features = self.features.compute(
            {k: batch[k] for k in ("archs", "support_x", "support_y", "descriptor", "index")}
        )
        mask = self.family.flat_mask(archs, self.container)
        nan = torch.full((len(rows),), float("nan"))
        return {
            **batch,
            "features": features,
            "mask": mask,
            "params": torch.zeros(mask.shape),  # no label: only a functional loss may train on these
            "init": torch.zeros(mask.shape),
            "mean_params": torch.full(mask.shape, float("nan")),
            "query_loss": nan,
            "init_query_loss": nan.clone(),
        }
