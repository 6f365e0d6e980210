"""wandb bookkeeping around Lightning's ``WandbLogger``: group, resume id, provenance, run identity.

Offline by default (``mode: ${oc.env:WANDB_MODE,offline}`` in ``conf/logger/wandb.yaml``): no
account, no network, no retry loop. The mode goes to ``wandb.init`` per run instead of through
``WandbLogger(offline=True)``, which rewrites ``WANDB_MODE`` for the whole process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from hyperpred.utils.ranks import is_global_zero

log = logging.getLogger(__name__)


def sweep_group(cfg: DictConfig) -> str | None:
    """``<task_name>-<multirun folder name>`` inside a Hydra multirun (one group per sweep), else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    return f"{cfg.get('task_name', 'run')}-{Path(hc.sweep.dir).name}"


def prepare_wandb_config(cfg: DictConfig, resume_id: str | None) -> None:
    """Fill the wandb logger's automatic fields in place: the sweep group and the resumed run id."""
    node = (cfg.get("logger") or {}).get("wandb")
    if not node:
        return
    with open_dict(cfg):
        if node.get("group") is None:
            node.group = sweep_group(cfg)
        if resume_id and node.get("id") is None:
            node.id = resume_id
            log.info("Resuming wandb run %s", resume_id)


def wandb_logger(loggers: Iterable[Any]) -> Any | None:
    """The ``WandbLogger`` among ``loggers`` (None if there is none)."""
    from pytorch_lightning.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


def record_provenance(loggers: Iterable[Any], info: dict[str, Any]) -> dict[str, Any] | None:
    """Put git commit and zoo hash into the wandb run's config and summary; return the run's identity.

    Returns ``{id, name, group, project, mode, dir}`` of the wandb run, or None without one.
    """
    wl = wandb_logger(loggers)
    if wl is None or not is_global_zero():  # other DDP ranks hold a dummy experiment
        return None
    run = wl.experiment  # starts the run (rank 0); a disabled run is a dummy that accepts everything
    zoo = info.get("zoo", {})
    provenance = {
        "git_commit": info.get("git_commit"),
        "git_dirty": info.get("git", {}).get("dirty"),
        "zoo_key": zoo.get("key"),
        "zoo_hash": zoo.get("content_hash"),
        "versions": info.get("versions"),
        "overrides": info.get("overrides", []),
    }
    run.config.update({"provenance": provenance}, allow_val_change=True)
    for key in ("git_commit", "zoo_key", "zoo_hash"):
        run.summary[key] = provenance[key]
    settings = getattr(run, "settings", None)
    return {
        "id": getattr(run, "id", None),
        "name": getattr(run, "name", None),
        "group": getattr(run, "group", None),
        "project": getattr(run, "project", None),
        "mode": getattr(settings, "mode", None) if settings is not None else None,
        "dir": str(getattr(run, "dir", "") or ""),
    }


def finish_wandb(exit_code: int = 0) -> None:
    """End the wandb run of this job so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
