"""Run-folder bookkeeping: loggers, callbacks, provenance (run.json), metrics.json, the printed table.

A run folder must be enough to reproduce its run: the resolved config, the command-line
overrides, the git commit, library versions and the zoo hash are written before training starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError, HyperpredError
from hyperpred.io import atomic_write_bytes, atomic_write_json
from hyperpred.metrics import LOSS_KEYS, json_safe
from hyperpred.run.checkpoint import CKPT_KEY
from hyperpred.utils.ranks import is_global_zero
from hyperpred.utils.wandb_run import wandb_logger

log = logging.getLogger(__name__)


def instantiate_list(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` child of a group node (callbacks, loggers), skipping nulls."""
    if not node:
        return []
    return [instantiate(child) for child in node.values() if child is not None and "_target_" in child]


# ---------------------------------------------------------------------- provenance
def git_info() -> dict[str, Any]:
    """Commit of the hyperpred checkout and whether it had uncommitted changes (None outside git)."""
    cwd = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def git_commit() -> str | None:
    return git_info()["commit"]


def versions() -> dict[str, str]:
    import hydra
    import numpy
    import omegaconf
    import pytorch_lightning
    import torch

    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "numpy": numpy.__version__,
    }
    try:
        from importlib.metadata import version

        out["wandb"] = version("wandb")
    except Exception:  # pragma: no cover - wandb is a dependency, but provenance must never crash a run
        pass
    return out


def zoo_content_hash(manifest: dict[str, Any]) -> str:
    """sha256 over the shard checksums: equal hashes mean byte-identical zoo data."""
    digest = hashlib.sha256()
    for record in sorted(manifest.get("shards", []), key=lambda r: r["index"]):
        digest.update(f"{record['index']}:{record['sha256']};".encode())
    return digest.hexdigest()


def hydra_context() -> dict[str, Any]:
    """Overrides and job identity from Hydra when it runs the job (empty under the compose API)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return {
        "overrides": list(hc.overrides.task),
        "mode": str(hc.mode.name) if hc.mode is not None else None,
        "job_name": hc.job.name,
        "job_num": hc.job.get("num"),
        "sweep_dir": hc.sweep.dir if str(hc.mode.name) == "MULTIRUN" else None,
        "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
    }


def write_run_info(output_dir: Path, cfg: DictConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Resolved config, overrides and provenance next to the run's outputs (rank 0 only).

    Returns the dict written to ``run.json`` so that loggers can record the same facts.
    """
    ctx = hydra_context()
    import torch

    info = {
        "git": git_info(),
        "versions": versions(),
        "command": sys.argv,
        "torch_threads": torch.get_num_threads(),
        **ctx,
        **extra,
    }
    info["git_commit"] = info["git"]["commit"]
    if is_global_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(output_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
        atomic_write_bytes(
            output_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(ctx.get("overrides", []))).encode()
        )
        atomic_write_json(output_dir / "run.json", info)
    return info


def update_run_info(output_dir: Path, **fields: Any) -> None:
    """Add fields to an existing run.json (e.g. the wandb run id, known only once the run started)."""
    path = output_dir / "run.json"
    if is_global_zero() and path.exists():
        atomic_write_json(path, {**json.loads(path.read_text()), **fields})


class RunIdentity(pl.Callback):
    """Stores the run's identity in every checkpoint, so ``ckpt_path=…`` resumes the same wandb run."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        wl = wandb_logger(trainer.loggers)
        checkpoint[CKPT_KEY] = {**self.info, "wandb_id": wl.version if wl is not None else self.info.get("wandb_id")}


def check_process_launch(trainer: pl.Trainer) -> None:
    """Refuse DDP that Lightning would launch by re-running the command line, inside a multirun.

    ``strategy: ddp_spawn`` (``trainer=ddp_sim``) passes: its ranks are spawned worker processes.

    Lightning starts ranks 1..N-1 by re-running ``sys.argv``; inside a Hydra multirun that is the
    whole sweep (or submitit's job runner), so every job would start stray sweeps. DDP jobs of a
    sweep must get their ranks from the cluster (``launcher=slurm`` with one task per device).
    """
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    env = getattr(trainer.strategy, "cluster_environment", None)
    if trainer.world_size <= 1 or env is None or env.creates_processes_externally:
        return
    if not isinstance(getattr(trainer.strategy, "launcher", None), _SubprocessScriptLauncher):
        return  # ddp_spawn (trainer=ddp_sim) starts worker processes from this one: fine inside a sweep
    if HydraConfig.initialized() and HydraConfig.get().mode is not None and HydraConfig.get().mode.name == "MULTIRUN":
        raise ConfigError(
            f"trainer with {trainer.world_size} processes inside a multirun: Lightning would start the other ranks by "
            "re-running "
            "the command line, i.e. the whole sweep. Run DDP sweeps with launcher=slurm "
            "(hydra.launcher.tasks_per_node = trainer.devices), with trainer.strategy.start_method=spawn "
            "(as trainer=ddp_sim does), or DDP runs one at a time without -m"
        )


# ---------------------------------------------------------------------- threads
def resolve_num_threads(cfg: DictConfig) -> int | None:
    """Torch threads for this process: ``num_threads`` if set, else share the cores among parallel jobs.

    Parallel jobs on one machine (submitit's local executor, CPU DDP with N processes) each using
    every core oversubscribe the CPU by orders of magnitude, so they get ``cores // jobs`` threads.
    None means leave torch's default.
    """
    if cfg.get("num_threads"):
        n = cfg.num_threads
        check_value("num_threads", n)
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return 1
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices", 1)
    if trainer.get("accelerator") == "cpu" and isinstance(devices, int) and devices > 1:
        return max(1, cores // devices)
    return None


# ---------------------------------------------------------------------- metrics
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


def finish_wandb(exit_code: int = 0) -> None:
    """End the wandb run of this job so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
