"""Train a weight predictor: ``python scripts/train.py [group=choice ...] [key=value ...]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from hyperpred.cli import run_entry
from hyperpred.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_entry(train, cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
