"""Refuse an empty sweep before it starts: Hydra would launch 0 jobs and exit successfully.

A sweep override whose value list is empty (``seed=range(0,0)``, ``lr=choice()``...) or a
sweeper asked for ``n_trials <= 0`` makes a multirun that does nothing; a script waiting for
its results learns that only later. This Hydra callback checks the overrides when the multirun
starts and stops it with a message that names the override.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from hyperpred.errors import ConfigError


def empty_sweep_reason(task_overrides: list[str], sweeper: DictConfig | None) -> str | None:
    """Why this multirun would launch no job, or None when it launches at least one."""
    parser = OverridesParser.create()
    for override in parser.parse_overrides(task_overrides):
        if override.is_sweep_override() and not override.is_hydra_override():
            if not any(True for _ in override.sweep_iterator()):
                return f"the sweep over '{override.get_key_element()}' ({override.input_line}) has no values"
    n_trials = OmegaConf.select(sweeper, "n_trials", default=None) if sweeper is not None else None
    if n_trials is not None and n_trials <= 0:
        return f"hydra.sweeper.n_trials={n_trials}: an Optuna sweep needs at least one trial"
    return None


class EmptySweepGuard(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        reason = empty_sweep_reason(list(config.hydra.overrides.task), config.hydra.get("sweeper"))
        if reason:
            # Hydra turns exceptions raised by callbacks into warnings; SystemExit stops the sweep.
            raise SystemExit(f"error: {ConfigError(f'empty sweep: {reason}; nothing would run')}")
