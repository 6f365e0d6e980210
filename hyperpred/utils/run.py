"""Run-folder bookkeeping: loggers, callbacks, metadata, metrics.json and the printed table."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hyperpred.metrics import LOSS_KEYS, json_safe
from hyperpred.zoo.store import atomic_write_json

log = logging.getLogger(__name__)


def instantiate_list(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` child of a group node (callbacks, loggers), skipping nulls."""
    if not node:
        return []
    return [instantiate(child) for child in node.values() if child is not None and "_target_" in child]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import hydra
    import pytorch_lightning
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "pytorch_lightning": pytorch_lightning.__version__, "hydra": hydra.__version__}


def write_run_info(output_dir: Path, cfg: DictConfig, extra: dict[str, Any]) -> None:
    """The resolved config and what is needed to reproduce the run, next to its outputs."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_json(output_dir / "run.json", {"git_commit": git_commit(), "versions": versions(), **extra})


def write_metrics(output_dir: Path, metrics: dict[str, float]) -> Path:
    path = output_dir / "metrics.json"
    atomic_write_json(path, json_safe(metrics))
    return path


def print_metrics_table(metrics: dict[str, float], splits: list[str]) -> None:
    """One row per test split: query loss of the prediction next to every baseline, and ratios."""
    from rich.console import Console
    from rich.table import Table

    cols = [*LOSS_KEYS, "ratio_vs_trained", "ratio_vs_init", "ratio_vs_zoo_mean", "weight_mse", "zoo_mean_weight_mse"]
    table = Table(title="Evaluation on held-out tasks (query loss; ratios are medians over tasks)")
    table.add_column("split")
    for c in cols:
        table.add_column(c.replace("_query_loss", "").replace("_", " "), justify="right")
    for split in splits:
        row = [metrics.get(f"{split}/{c}", float("nan")) for c in cols]
        table.add_row(split, *(f"{v:.4g}" for v in row))
    Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0))).print(table)


def finish_wandb() -> None:
    """End the wandb run of this job so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
