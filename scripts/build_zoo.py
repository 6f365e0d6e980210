"""Build a zoo (or a slice of it) ahead of training: ``python scripts/build_zoo.py [overrides]``.

``-m zoo.shard_index=0,1 zoo.num_shards=2`` splits the build over jobs (a Hydra multirun, or a
SLURM array with ``launcher=slurm``); ``scripts/train.py`` with the same overrides then loads the
zoo without training it. The last line printed is the zoo's folder.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from hyperpred.cli import run_entry
from hyperpred.zoo.jobs import build_zoo


@hydra.main(version_base="1.3", config_path="../conf", config_name="build_zoo")
def main(cfg: DictConfig) -> None:
    folder = run_entry(build_zoo, cfg)
    print(folder, flush=True)


if __name__ == "__main__":
    main()
