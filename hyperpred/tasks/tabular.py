"""Any small tabular data set bundled with scikit-learn, as a family of tasks (nothing downloaded).

A task sees a random subset of the features (the others are zeroed: the descriptor is the
feature mask) and/or a bootstrap resample of the rows. Classification data sets use
cross-entropy over one-hot labels; regression data sets use MSE on standardized targets.
Support rows come from one part of the data set and query rows from the other, so the query
loss measures generalization to unseen rows. Features are standardized with the support part's
statistics. Tasks are grouped by feature subset, so held-out tasks see subsets never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError
from hyperpred.registry import register
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task, TaskBatch

#: name → (scikit-learn loader, is classification). All of them read files shipped with the package.
DATASETS = {
    "iris": ("load_iris", True),
    "wine": ("load_wine", True),
    "breast_cancer": ("load_breast_cancer", True),
    "digits": ("load_digits", True),
    "diabetes": ("load_diabetes", False),
    "linnerud": ("load_linnerud", False),
}


def load_bundled(name: str) -> tuple[Tensor, Tensor, bool]:
    """``(x [N, d], y, classification)``: y is ``[N]`` class ids or ``[N, t]`` regression targets."""
    if name not in DATASETS:
        raise ConfigError(
            f"task.dataset must be one of {sorted(DATASETS)} (scikit-learn's bundled data sets), got {name!r}"
        )
    import sklearn.datasets

    loader, classification = DATASETS[name]
    data = getattr(sklearn.datasets, loader)()
    x = torch.as_tensor(data.data, dtype=torch.get_default_dtype())
    if classification:
        return x, torch.as_tensor(data.target, dtype=torch.long), True
    y = torch.as_tensor(data.target, dtype=torch.get_default_dtype())
    return x, y.reshape(len(y), -1), False


@register("task")
class TabularTask(Task):
    name = "tabular"

    def __init__(
        self,
        dataset: str = "wine",
        n_support: int = 32,
        n_query: int = 40,
        feature_fraction: float = 0.5,
        bootstrap: bool = False,
        query_fraction: float = 0.3,
        pool_seed: int = 0,
    ) -> None:
        super().__init__(n_support, n_query)
        check_value("task.feature_fraction", feature_fraction)
        check_value("task.query_fraction", query_fraction)
        self.dataset = dataset
        self.feature_fraction = float(feature_fraction)
        self.bootstrap = bool(bootstrap)
        self.query_fraction = float(query_fraction)
        self.pool_seed = int(pool_seed)
        x, y, self.classification = load_bundled(dataset)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.pool_seed))
        n_q = round(self.query_fraction * len(x))
        q, s = perm[:n_q], perm[n_q:]
        mean, std = x[s].mean(0), x[s].std(0).clamp_min(1e-8)
        x = (x - mean) / std
        if self.classification:
            self.num_outputs = int(y.max()) + 1
            y = torch.nn.functional.one_hot(y, self.num_outputs).to(x.dtype)
        else:
            self.num_outputs = y.shape[1]
            y = (y - y[s].mean(0)) / y[s].std(0).clamp_min(1e-8)
        self.num_features = x.shape[1]
        self.num_kept = max(1, round(self.feature_fraction * self.num_features))
        self.support_x, self.support_y, self.query_x, self.query_y = x[s], y[s], x[q], y[q]
        if not self.bootstrap and n_support > len(s):
            raise ConfigError(
                f"task.n_support={n_support} exceeds the {len(s)} support rows of '{dataset}'; lower it or set "
                "task.bootstrap=true"
            )
        if n_query > len(q):
            raise ConfigError(
                f"task.n_query={n_query} exceeds the {len(q)} query rows of '{dataset}'; lower it or raise "
                "task.query_fraction"
            )

    def check_compatible(self, family: TargetFamily, archs: Sequence[Sequence[int]]) -> None:
        for arch in archs:
            in_shape, out_shape = family.input_shape(arch), family.output_shape(arch)
            if in_shape != (self.num_features,) or out_shape != (self.num_outputs,):
                what = "classes" if self.classification else "targets"
                raise self._incompatible(
                    family,
                    f"'{self.dataset}' has {self.num_features} features and {self.num_outputs} {what}, but "
                    "architecture "
                    f"{family.arch_to_dict(arch)} maps inputs of shape {in_shape} to outputs of shape {out_shape}",
                )

    def descriptor_dim(self, family: TargetFamily, container: Sequence[int]) -> int:
        return self.num_features

    def _rows(self, b: int, n: int, pool: int, replace: bool, generator: torch.Generator) -> Tensor:
        if replace:
            return torch.randint(pool, (b, n), generator=generator)
        return torch.rand((b, pool), generator=generator).argsort(1)[:, :n]

    def sample(
        self, family: TargetFamily, archs: Tensor, container: Sequence[int], generator: torch.Generator
    ) -> TaskBatch:
        b = archs.shape[0]
        keep = torch.rand((b, self.num_features), generator=generator).argsort(1)[:, : self.num_kept]
        mask = torch.zeros(b, self.num_features).scatter_(1, keep, 1.0)  # [B, d] features this task sees
        s = self._rows(b, self.n_support, len(self.support_x), self.bootstrap, generator)
        q = self._rows(b, self.n_query, len(self.query_x), False, generator)
        m = mask.unsqueeze(1)
        return TaskBatch(mask, self.support_x[s] * m, self.support_y[s], self.query_x[q] * m, self.query_y[q])

    def split_groups(self, descriptor: Tensor) -> Tensor | None:
        """The feature subset of each task; None when every task sees all features."""
        if self.num_kept == self.num_features:
            return None
        return torch.unique(descriptor, dim=0, return_inverse=True)[1]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "dataset": self.dataset,
            "feature_fraction": self.feature_fraction,
            "bootstrap": self.bootstrap,
            "query_fraction": self.query_fraction,
            "pool_seed": self.pool_seed,
        }
