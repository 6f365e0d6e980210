"""The built-in baselines of every test split: per-target numbers of the prediction and of what it is compared with.

A :class:`Baseline` turns one test batch into per-target tensors named ``<name>_query_loss`` (and
``<name>_accuracy`` for classification, ``<name>_weight_mse`` where it has weights);
:func:`hyperpred.metrics.summarize` then reports means and the medians of ``pred / <name>`` as
``ratio_vs_<name>``. The peers that must be trained first (MAML, a CNP, ...) live in
:mod:`hyperpred.evaluation.peers` and run once per split instead of once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.losses import masked_weight_mse


@dataclass(frozen=True)
class EvalBatch:
    """One test batch and how to score flat parameters on it (per target, on its query set)."""

    batch: dict[str, Tensor]
    pred: Tensor
    query_loss: Callable[[Tensor], Tensor]
    #: None for regression tasks.
    query_accuracy: Callable[[Tensor], Tensor] | None

    def nan(self) -> Tensor:
        return torch.full_like(self.batch["query_loss"], float("nan"))


class Baseline:
    """Per-target numbers of one set of weights on a test batch; subclasses set ``name`` and ``per_target``."""

    name: str = ""

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class Prediction(Baseline):
    """The predicted weights themselves (``pred_*``, and ``weight_mse`` against the trained target)."""

    name = "pred"

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:
        b = tb.batch
        out = {
            "pred_query_loss": tb.query_loss(tb.pred),
            "weight_mse": masked_weight_mse(tb.pred, b["params"], b["mask"]),
        }
        if tb.query_accuracy is not None:
            out["pred_accuracy"] = tb.query_accuracy(tb.pred)
        return out


class TrainedTarget(Baseline):
    """The zoo's trained target: what training each target on its own reaches (its loss is stored in the zoo)."""

    name = "trained"

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:
        out = {"trained_query_loss": tb.batch["query_loss"]}
        if tb.query_accuracy is not None:
            out["trained_accuracy"] = tb.query_accuracy(tb.batch["params"])
        return out


class RandomInit(Baseline):
    """The target's initial weights: not predicting at all (its loss is stored in the zoo)."""

    name = "init"

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:
        out = {"init_query_loss": tb.batch["init_query_loss"]}
        if tb.query_accuracy is not None:
            out["init_accuracy"] = tb.query_accuracy(tb.batch["init"])
        return out


class ZooMean(Baseline):
    """The training zoo's mean weights of the target's architecture (NaN where the zoo has none)."""

    name = "zoo_mean"

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:
        b = tb.batch
        mean = torch.nan_to_num(b["mean_params"], nan=0.0)
        has_mean = torch.isfinite(b["mean_params"]).all(1)
        out = {
            "zoo_mean_query_loss": torch.where(has_mean, tb.query_loss(mean), tb.nan()),
            "zoo_mean_weight_mse": torch.where(has_mean, masked_weight_mse(mean, b["params"], b["mask"]), tb.nan()),
        }
        if tb.query_accuracy is not None:
            out["zoo_mean_accuracy"] = torch.where(has_mean, tb.query_accuracy(mean), tb.nan())
        return out


#: What every test split reports, in this order.
BUILTIN: tuple[Baseline, ...] = (Prediction(), TrainedTarget(), RandomInit(), ZooMean())
