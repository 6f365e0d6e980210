"""Build a zoo, or one slice of it, as a job: ``scripts/build_zoo.py`` and its sweep callback.

Sweeps share zoos, so the zoo can be built ahead of them, and in parallel: job ``k`` of ``J``
(``zoo.shard_index=k zoo.num_shards=J``) builds shards ``k, k+J, k+2J, ...``. Whichever job
finds every shard done writes the manifest; if none does (jobs still running), the next reader
(``ZooBuilder.get`` in a training run, or the sweep's end callback) writes it. The builder comes
from :func:`hyperpred.factory.build_parts`, so the zoo's key is exactly the one that
``scripts/train.py`` with the same overrides computes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError
from hyperpred.io import atomic_write_json
from hyperpred.zoo.store import MANIFEST

log = logging.getLogger(__name__)
#: What each build job writes into its output folder, for the sweep callback and for scripts.
JOB_FILE = "zoo_job.json"


def shard_slice(num_zoo_shards: int, shard_index: Any, num_jobs: Any) -> list[int]:
    """The zoo shards that job ``shard_index`` of ``num_jobs`` builds (validated, named keys)."""
    check_value("zoo.num_shards", num_jobs)
    check_value("zoo.shard_index", shard_index)
    if not shard_index < num_jobs:
        raise ConfigError(f"zoo.shard_index must be in [0, zoo.num_shards={num_jobs}), got {shard_index}")
    return list(range(shard_index, num_zoo_shards, num_jobs))


def job_threads(cfg: DictConfig) -> int | None:
    """Torch threads of a build job: ``num_threads`` if set, 1 per job under submitit's local
    executor (parallel jobs on one machine), else torch's default. The rule of
    ``hyperpred.run.threads.resolve_num_threads`` for the cases a build job meets, without
    importing Lightning (seconds per job) for it."""
    n = cfg.get("num_threads")
    if n:
        check_value("num_threads", n)
        return n
    return 1 if os.environ.get("SUBMITIT_EXECUTOR") == "local" else None


def build_zoo(cfg: DictConfig) -> Path:
    """Build this job's slice of the zoo that ``cfg`` describes; assemble the manifest if complete."""
    from hyperpred.factory import build_parts

    index, jobs = cfg.zoo.get("shard_index", 0), cfg.zoo.get("num_shards", 1)
    if threads := job_threads(cfg):
        torch.set_num_threads(threads)
    parts = build_parts(cfg)
    builder = parts.builder
    mine = shard_slice(builder.spec.num_shards, index, jobs)
    log.info(
        "Zoo %s: job %d of %d builds %d of its %d shards -> %s",
        builder.spec.key[:16],
        index,
        jobs,
        len(mine),
        builder.spec.num_shards,
        builder.folder,
    )
    stats = builder.build(mine)
    manifest = builder.assemble_manifest()
    if manifest is not None:
        log.info(
            "Zoo complete (%d targets, %d diverged): manifest written",
            manifest["num_targets"],
            manifest["num_diverged"],
        )
    else:
        log.info(
            "Shards %s are still missing (other jobs); the last job or the next reader writes the manifest",
            builder.missing_shards(),
        )
    log.info(
        "This job trained %d targets in %.1fs (shards %s)", stats.targets_trained, stats.seconds, stats.shards_trained
    )
    out = Path(cfg.paths.output_dir)
    atomic_write_json(
        out / JOB_FILE,
        {
            "folder": str(builder.folder.resolve()),
            "key": builder.spec.key,
            "num_shards": builder.spec.num_shards,
            "shards": mine,
            "shards_trained": stats.shards_trained,
            "targets_trained": stats.targets_trained,
            "seconds": round(stats.seconds, 3),
            "complete": manifest is not None,
        },
    )
    return builder.folder


class ZooSweepCallback(Callback):
    """At the end of a ``build_zoo.py`` multirun: say which zoos are complete, and print their
    folders last (the last line is what a script chaining the build and a sweep reads).

    It replaces the sweep report of ``train.py`` sweeps: a zoo build has no metrics to report.
    """

    def __init__(self, **_: Any) -> None:  # accepts and ignores the options of the report it replaces
        pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folders: dict[str, int] = {}
        for job in sorted(Path(config.hydra.sweep.dir).glob(f"*/{JOB_FILE}")):
            info = json.loads(job.read_text())
            folders[info["folder"]] = info["num_shards"]
        for folder, num_shards in folders.items():
            if (Path(folder) / MANIFEST).exists():
                log.info("Zoo complete: %s", folder)
            else:
                done = len(list(Path(folder).glob("shard-*.json")))
                log.warning(
                    "Zoo incomplete (%d of %d shards; a job failed?): rerun the same command to finish %s",
                    done,
                    num_shards,
                    folder,
                )
        for folder in folders:
            print(folder, flush=True)
