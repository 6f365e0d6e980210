"""Predict a target for a new task: ``python scripts/predict.py ckpt_path=… arch=… support=… out=…``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from hyperpred.api import predict_to_files
from hyperpred.cli import run_entry


def predict(cfg: DictConfig) -> dict:
    arch = OmegaConf.to_container(cfg.arch, resolve=True) if OmegaConf.is_config(cfg.arch) else cfg.arch
    result = predict_to_files(cfg.ckpt_path, arch, cfg.support, cfg.out)
    fit = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith("support_"))
    print(f"wrote {result['weights']} and {result['arch']} ({fit} on its own {cfg.support})")
    print(f'load it with: model = hyperpred.load_target("{result["weights"]}")')
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_entry(predict, cfg)


if __name__ == "__main__":
    main()
