"""Per-target evaluation numbers and their summary against the baselines of the same run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: Query losses per target that every evaluation reports side by side.
LOSS_KEYS = ("pred_query_loss", "trained_query_loss", "init_query_loss", "zoo_mean_query_loss")
#: Query accuracies per target, reported for classification tasks.
ACCURACY_KEYS = ("pred_accuracy", "trained_accuracy", "init_accuracy", "zoo_mean_accuracy")
EPS = 1e-12


def _median_ratio(num: Tensor, den: Tensor) -> float:
    ok = torch.isfinite(num) & torch.isfinite(den)
    if not ok.any():
        return float("nan")
    return (num[ok] / den[ok].clamp_min(EPS)).median().item()


def _nanmean(x: Tensor) -> float:
    ok = torch.isfinite(x)
    return x[ok].mean().item() if ok.any() else float("nan")


def summarize(per_target: dict[str, Tensor]) -> dict[str, float]:
    """Means of each per-target loss, and medians over tasks of the loss ratios.

    Every ``<name>_query_loss`` is a baseline (``pred`` is the prediction). ``ratio_vs_<name>`` =
    median(pred / <name>): ``ratio_vs_trained`` 1 means as good as training each target;
    ``ratio_vs_init`` and ``ratio_vs_zoo_mean`` compare with not predicting at all. Classification
    adds the mean query accuracies and ``accuracy_ratio`` = mean predicted / mean trained accuracy.
    """
    losses = [*(k for k in LOSS_KEYS if k in per_target), *(k for k in per_target if _is_other(k, "_query_loss"))]
    weights = [k for k in per_target if k == "weight_mse" or k.endswith("_weight_mse")]
    out = {k: _nanmean(per_target[k]) for k in (*losses, *weights)}
    pred = per_target["pred_query_loss"]
    for key in ("trained_query_loss", "init_query_loss", "zoo_mean_query_loss", *losses):
        name = key.removesuffix("_query_loss")
        if name != "pred" and f"ratio_vs_{name}" not in out:
            out[f"ratio_vs_{name}"] = _median_ratio(pred, per_target[key])
    if "pred_accuracy" in per_target:
        accuracies = [
            *(k for k in ACCURACY_KEYS if k in per_target),
            *(k for k in per_target if _is_other(k, "_accuracy")),
        ]
        out.update({k: _nanmean(per_target[k]) for k in accuracies})
        # the goal "predicted classifiers reach x% of the trained ones' accuracy", over the split
        out["accuracy_ratio"] = out["pred_accuracy"] / max(out["trained_accuracy"], EPS)
    if "finetune_steps_fraction" in per_target:
        out.update(summarize_finetune(per_target["finetune_steps_fraction"], per_target.get("finetune_reached")))
    out["num_tasks"] = float(len(pred))
    return out


def _is_other(key: str, suffix: str) -> bool:
    """A per-target key of a baseline beyond the built-in ones (:data:`LOSS_KEYS`, :data:`ACCURACY_KEYS`)."""
    return key.endswith(suffix) and key not in LOSS_KEYS and key not in ACCURACY_KEYS


def summarize_finetune(fraction: Tensor, reached: Tensor | None = None) -> dict[str, float]:
    """Fine-tuning steps from the prediction / the trained target's steps, over tasks.

    ``fraction`` is per task, counted at the budget for tasks that did not reach the trained loss
    within it (``reached`` = 0). ``finetune_steps_fraction`` is the median (like the loss ratios),
    ``finetune_steps_fraction_mean`` the mean, ``finetune_reached`` the share of tasks that got
    there. Where ``finetune_reached`` < 1 the numbers are lower bounds for the unreached tasks.
    """
    ok = torch.isfinite(fraction)
    if not ok.any():
        return {}
    out = {
        "finetune_steps_fraction": fraction[ok].median().item(),
        "finetune_steps_fraction_mean": fraction[ok].mean().item(),
    }
    if reached is not None:
        out["finetune_reached"] = reached[ok].to(fraction.dtype).mean().item()
    return out


def json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN/Inf become null: strict JSON has no NaN."""
    return {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in metrics.items()}


def best_seconds(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (the first call may pay one-off costs)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
