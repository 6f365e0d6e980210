"""Shared test helpers: compose the real Hydra config with tiny sizes and temporary paths."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

#: Overrides that make any experiment run in seconds on a CPU.
TINY = [
    "zoo.num_targets=96",
    "zoo.shard_size=48",
    "zoo.steps=5",
    "zoo.progress=false",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
    "logger=none",
]

torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")


def compose_config(overrides: Sequence[str], tmp_path: Path, tiny: bool = True) -> DictConfig:
    """The config ``scripts/train.py`` would see, with outputs and cache under ``tmp_path``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*(TINY if tiny else []), *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    return lambda *overrides, tiny=True: compose_config(overrides, tmp_path, tiny)


def run_script(
    script: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run one of scripts/ in a real subprocess, outputs rooted at ``cwd``."""
    full_env = {
        **os.environ,
        "HYPERPRED_ROOT": str(cwd),
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
