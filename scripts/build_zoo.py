"""Build a zoo (or a slice of it) ahead of training: ``python scripts/build_zoo.py [overrides]``.

``-m zoo.shard_index=0,1 zoo.num_shards=2`` splits the build over jobs (a Hydra multirun, or a
SLURM array with ``launcher=slurm``); ``scripts/train.py`` with the same overrides then loads the
zoo without training it. The last line printed is the zoo's folder. The same as ``hyperpred-build-zoo``.
"""

from hyperpred.console import build_zoo_command

if __name__ == "__main__":
    build_zoo_command()
