"""How many torch threads this process uses (``num_threads``, or a share of the cores among parallel jobs)."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from hyperpred.config_schema import check_value


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
