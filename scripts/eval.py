"""Evaluate a checkpoint on a split of its zoo: ``python scripts/eval.py ckpt_path=… [split=test]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from hyperpred.cli import run_entry
from hyperpred.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_entry(evaluate, cfg)


if __name__ == "__main__":
    main()
