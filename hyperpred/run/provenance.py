"""What a run records about itself, so that its folder is enough to reproduce it.

The resolved config, the command-line overrides, the git commit, library versions and the zoo
hash go to ``run.json`` before training starts; :class:`RunIdentity` puts the same facts into
every checkpoint, so that ``ckpt_path=...`` resumes the same wandb run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from hyperpred.io import atomic_write_bytes, atomic_write_json
from hyperpred.run.checkpoint import CKPT_KEY
from hyperpred.utils.ranks import is_global_zero
from hyperpred.utils.wandb_run import wandb_logger


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
