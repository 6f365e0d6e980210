"""A finished run's numbers: ``metrics.json``, the value a sweeper optimizes, the printed table."""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig

from hyperpred.errors import ConfigError, HyperpredError
from hyperpred.io import atomic_write_json
from hyperpred.metrics import LOSS_KEYS, json_safe


def write_metrics(output_dir: Path, metrics: dict[str, float]) -> Path:
    path = output_dir / "metrics.json"
    atomic_write_json(path, json_safe(metrics))
    return path


class NonFiniteMetric(HyperpredError):
    """The optimized metric is NaN/inf: the run diverged."""


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a sweeper optimizes (``optimized_metric``).

    A diverged run raises instead of returning NaN: Hydra then records the job as failed and the
    Optuna sweeper marks the trial FAIL and goes on (hydra-optuna-sweeper 1.2 crashes the whole
    study on a NaN return value: it tells the failed trial twice, the second time with values).
    """
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name} is not among this run's metrics: {sorted(metrics)}")
    value = float(metrics[name])
    if not math.isfinite(value):
        raise NonFiniteMetric(f"optimized_metric {name} is {value}: the run diverged (metrics.json is written)")
    return value


def print_metrics_table(metrics: dict[str, float], splits: list[str]) -> None:
    """One row per test split: query loss of the prediction next to every baseline, and ratios."""
    from rich.console import Console
    from rich.table import Table

    cols = [*LOSS_KEYS, "ratio_vs_trained", "ratio_vs_init", "ratio_vs_zoo_mean", "weight_mse", "zoo_mean_weight_mse"]
    cols += [c for c in ("finetune_steps_fraction",) if any(f"{split}/{c}" in metrics for split in splits)]
    table = Table(title="Evaluation on held-out tasks (query loss; ratios are medians over tasks)")
    table.add_column("split")
    for c in cols:
        table.add_column(c.replace("_query_loss", "").replace("_", " "), justify="right")
    for split in splits:
        row = [metrics.get(f"{split}/{c}", float("nan")) for c in cols]
        table.add_row(split, *(f"{v:.4g}" for v in row))
    Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0))).print(table)
