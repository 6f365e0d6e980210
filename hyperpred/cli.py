"""Shared behaviour of the Hydra entry points: one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from hyperpred.errors import HyperpredError

T = TypeVar("T")
log = logging.getLogger("hyperpred")


def run_entry(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``fn(cfg)``; a :class:`HyperpredError` ends the process with its message alone.

    Inside a multirun the error is re-raised instead: Hydra then records this job as failed and
    the sweep (e.g. an Optuna study) goes on, where ``SystemExit`` would end every job at once.
    """
    try:
        return fn(cfg)
    except HyperpredError as e:
        log.error("%s", e)
        if _in_multirun():
            raise
        raise SystemExit(f"error: {e}") from None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return (
        HydraConfig.initialized() and HydraConfig.get().mode is not None and HydraConfig.get().mode.name == "MULTIRUN"
    )
