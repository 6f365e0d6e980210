"""Refuse a DDP launch that would re-run a whole sweep (checked once the trainer exists, before fit)."""

from __future__ import annotations

import pytorch_lightning as pl

from hyperpred.errors import ConfigError


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
