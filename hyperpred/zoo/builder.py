"""Build a zoo shard by shard (or load it from the cache) under file locks.

Each shard depends only on ``(spec, shard index)``: its tasks, inits and training draw from a
generator seeded by a stable hash of both. Shards are therefore built in any order, by any
process, resumed after a crash, and always come out byte-identical.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor

from hyperpred.errors import ZooFileError
from hyperpred.targets.base import TargetFamily, arch_tensor
from hyperpred.tasks.base import Task
from hyperpred.zoo.spec import FORMAT_VERSION, ZooSpec, stable_seed
from hyperpred.zoo.store import MANIFEST, atomic_write_json, read_json, read_shard, shard_is_valid, write_shard
from hyperpred.zoo.training import per_target_loss, train_targets

log = logging.getLogger(__name__)


@dataclass
class Zoo:
    """A loaded zoo: its manifest and its tensors concatenated over shards (``[N, ...]``)."""

    folder: Path
    manifest: dict[str, Any]
    tensors: dict[str, Tensor]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def container(self) -> tuple[int, ...]:
        return tuple(self.manifest["spec"]["container"])

    def __len__(self) -> int:
        return self.tensors["archs"].shape[0]


@dataclass
class BuildStats:
    shards_trained: list[int] = field(default_factory=list)
    targets_trained: int = 0
    seconds: float = 0.0
    loaded_from_cache: bool = False


def shared_init(family: TargetFamily, archs: Tensor, container: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """One fixed init per distinct architecture (seeded by the architecture), gathered per target."""
    unique, inverse = torch.unique(archs, dim=0, return_inverse=True)
    per_arch = [family.init(u.unsqueeze(0), container, torch.Generator().manual_seed(stable_seed(seed, "init", tuple(u.tolist())))) for u in unique]
    return {k: torch.cat([p[k] for p in per_arch])[inverse] for k in per_arch[0]}


def build_shard(family: TargetFamily, task: Task, spec: ZooSpec, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Sample, initialize and train the targets of one shard. Pure function of ``(spec, index)``."""
    start, stop = spec.shard_bounds(index)
    n = stop - start
    g = torch.Generator().manual_seed(stable_seed(spec.seed, "shard", index))
    table = arch_tensor(spec.archs)
    archs = table[torch.randint(len(spec.archs), (n,), generator=g)]
    batch = task.sample(family, archs, spec.container, g)
    if spec.init == "shared":
        init = shared_init(family, archs, spec.container, spec.seed)
    else:
        init = family.init(archs, spec.container, g)
    result = train_targets(family, task, archs, spec.container, init, batch.support_x, batch.support_y, spec.recipe, g)
    with torch.no_grad():
        query_loss = per_target_loss(family, task, result.params, archs, spec.container, batch.query_x, batch.query_y)
        init_query_loss = per_target_loss(family, task, init, archs, spec.container, batch.query_x, batch.query_y)
    finite = torch.isfinite(result.train_loss) & torch.isfinite(query_loss)
    for p in result.params.values():
        finite &= torch.isfinite(p.flatten(1)).all(1)
    tensors = {
        "index": torch.arange(start, stop),
        "archs": archs,
        "init": family.flatten(init),
        "params": family.flatten(result.params),
        "train_loss": result.train_loss,
        "query_loss": query_loss,
        "init_query_loss": init_query_loss,
        "finite": finite,
        **{k: v for k, v in batch.as_dict().items()},
    }
    record = {"index": index, "start": start, "stop": stop, "diverged": int((~finite).sum())}
    return tensors, record


class ZooBuilder:
    """Finds, builds, verifies and loads the zoo that a :class:`ZooSpec` describes."""

    def __init__(self, family: TargetFamily, task: Task, spec: ZooSpec, cache_dir: str | Path, progress: bool = False) -> None:
        self.family, self.task, self.spec = family, task, spec
        self.folder = Path(cache_dir) / "zoo" / spec.dirname
        self.progress = progress

    def _shard_lock(self, index: int) -> FileLock:
        return FileLock(str(self.folder / f".shard-{index:05d}.lock"))

    def build(self, shards: Iterable[int] | None = None) -> BuildStats:
        """Build the missing or damaged shards among ``shards`` (all by default)."""
        stats = BuildStats()
        t0 = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = list(range(self.spec.num_shards) if shards is None else shards)
        from hyperpred.utils.progress import zoo_progress

        with zoo_progress(self.progress, self.spec.num_targets, self.folder.name) as advance:
            for index in todo:
                start, stop = self.spec.shard_bounds(index)
                with self._shard_lock(index):
                    if shard_is_valid(self.folder, index) is None:
                        tensors, record = build_shard(self.family, self.task, self.spec, index)
                        write_shard(self.folder, index, tensors, record)
                        stats.shards_trained.append(index)
                        stats.targets_trained += stop - start
                advance(stop - start)
        stats.seconds = time.perf_counter() - t0
        return stats

    def assemble_manifest(self) -> dict[str, Any] | None:
        """Write the manifest once every shard is complete and intact; None if some are missing."""
        with FileLock(str(self.folder / ".manifest.lock")):
            records = [shard_is_valid(self.folder, i) for i in range(self.spec.num_shards)]
            if any(r is None for r in records):
                return None
            manifest = {
                "format_version": FORMAT_VERSION,
                "key": self.spec.key,
                "spec": self.spec.to_dict(),
                "num_targets": self.spec.num_targets,
                "num_diverged": sum(r["diverged"] for r in records),
                "shards": records,
            }
            atomic_write_json(self.folder / MANIFEST, manifest)
            return manifest

    def load(self) -> Zoo:
        """Load a complete zoo, verifying the manifest's format, key and every shard checksum."""
        path = self.folder / MANIFEST
        manifest = read_json(path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ZooFileError(f"{path}: zoo format version {manifest.get('format_version')!r}, this hyperpred reads {FORMAT_VERSION}")
        if manifest.get("key") != self.spec.key:
            raise ZooFileError(f"{path}: manifest key does not match the requested zoo {self.spec.key[:16]}")
        parts = [read_shard(self.folder, rec) for rec in manifest["shards"]]
        tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return Zoo(self.folder, manifest, tensors)

    def get(self) -> tuple[Zoo, BuildStats]:
        """Load the zoo from the cache, building (or repairing) whatever is missing first."""
        t0 = time.perf_counter()
        if (self.folder / MANIFEST).exists():
            try:
                zoo = self.load()
                log.info("Zoo %s loaded from cache (%d targets, nothing trained): %s", self.spec.key[:16], len(zoo), self.folder)
                return zoo, BuildStats(loaded_from_cache=True, seconds=time.perf_counter() - t0)
            except ZooFileError as e:
                log.warning("Zoo cache damaged, rebuilding the bad shards: %s", e)
        log.info("Building zoo %s: %d targets in %d shards -> %s", self.spec.key[:16], self.spec.num_targets, self.spec.num_shards, self.folder)
        stats = self.build()
        if self.assemble_manifest() is None:  # pragma: no cover - build() completes every shard
            raise ZooFileError(f"{self.folder}: shards still incomplete after building")
        zoo = self.load()
        stats.seconds = time.perf_counter() - t0
        log.info("Zoo built: %d targets trained in %.1fs (%.0f targets/s)", stats.targets_trained, stats.seconds, stats.targets_trained / max(stats.seconds, 1e-9))
        return zoo, stats
