"""Paths in a config resolved against the folder the command started in, whatever ``hydra.job.chdir`` says.

With ``hydra.job.chdir=true`` Hydra moves every job into its run folder before the job starts, so a
relative ``paths.root_dir`` (the default ``.``) would put a zoo cache into every run folder, each
rebuilt, and ``ckpt_path=outputs/.../last.ckpt`` would point into the run folder. Hydra records the
original working directory (``hydra.runtime.cwd``); every relative path is made absolute against it
before anything reads it. Without Hydra (the compose API, plain calls), the current folder is used.
"""

from __future__ import annotations

import os

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, open_dict

#: Keys of ``paths`` that Hydra fills with absolute paths itself (and that the compose API leaves unset).
HYDRA_OWNED = ("output_dir",)


def absolute_paths(cfg: DictConfig, keys: tuple[str, ...] = ("ckpt_path",)) -> DictConfig:
    """Make ``cfg.paths.*`` and the top-level ``keys`` absolute against the original working directory.

    ``paths.root_dir`` goes first, so ``log_dir`` and ``cache_dir`` that interpolate it become absolute
    with it; a value a user set to a relative path of its own is made absolute too. Modifies ``cfg``.
    """
    with open_dict(cfg):
        paths = cfg.get("paths")
        if paths is not None:
            order = sorted(paths.keys(), key=lambda k: k != "root_dir")
            for key in order:
                if key in HYDRA_OWNED:
                    continue
                value = paths[key]
                if isinstance(value, str) and value and not os.path.isabs(value):
                    paths[key] = to_absolute_path(value)
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value):
                cfg[key] = to_absolute_path(value)
    return cfg
