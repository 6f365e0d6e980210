"""Train a weight predictor: ``python scripts/train.py [group=choice ...] [key=value ...]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from hyperpred.cli import run_entry
from hyperpred.train import train
from hyperpred.utils.run import optimized_value


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_entry(train, cfg)
    return run_entry(lambda c: optimized_value(c, metrics), cfg)  # what a sweeper (hparams_search=optuna) optimizes


if __name__ == "__main__":
    main()
