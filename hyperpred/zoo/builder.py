"""Build a zoo shard by shard (or load it from the cache) under file locks.

Each shard depends only on ``(spec, shard index)``: its tasks, inits and training draw from a
generator seeded by a stable hash of both. Shards are therefore built in any order, by any
process, resumed after a crash, and always come out byte-identical.

Durability rests on three rules:

- every file is written to a temporary name and renamed into place, and a shard's *record*
  (its sha256 and size) is written only after the shard itself: a record vouches for a shard;
- a shard is built only under its own lock (``fcntl`` locks die with their process, so a
  SIGKILLed builder never blocks anyone), after re-checking that nobody built it meanwhile;
- nothing is trusted without its checksum: a truncated or altered shard is rebuilt, never loaded.

Several processes asking for one zoo share the work: each builds the shards it can lock right
away, then waits for the ones others hold (and builds them itself if their holder died).
Building streams shards to disk one at a time; only :meth:`ZooBuilder.load` holds the whole zoo.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import Tensor

from hyperpred.errors import ZooFileError
from hyperpred.io import atomic_write_json
from hyperpred.seeding import shared_init, stable_seed
from hyperpred.targets.base import TargetFamily, arch_tensor
from hyperpred.tasks.base import Task
from hyperpred.zoo.spec import FORMAT_VERSION, ZooSpec
from hyperpred.zoo.store import (
    MANIFEST,
    read_json,
    read_shard,
    record_name,
    remove_stale_temps,
    shard_is_valid,
    shard_name,
    write_shard,
)
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


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads (process-wide), then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class BuildStats:
    shards_trained: list[int] = field(default_factory=list)
    targets_trained: int = 0
    seconds: float = 0.0
    loaded_from_cache: bool = False
    shards_waited: list[int] = field(default_factory=list)  # built by another process while we waited


def build_shard(
    family: TargetFamily,
    task: Task,
    spec: ZooSpec,
    index: int,
    *,
    strategy: str = "auto",
    device: torch.device | str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Sample, initialize and train the targets of one shard. Pure function of ``(spec, index)``."""
    if not 0 <= index < spec.num_shards:
        raise ValueError(f"shard index {index} out of range: this zoo has {spec.num_shards} shards")
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
    result = train_targets(
        family,
        task,
        archs,
        spec.container,
        init,
        batch.support_x,
        batch.support_y,
        spec.recipe,
        g,
        strategy=strategy,
        device=device,
        on_progress=on_progress,
    )
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
    record = {
        "index": index,
        "start": start,
        "stop": stop,
        "key": spec.key,
        "format_version": FORMAT_VERSION,
        "diverged": int((~finite).sum()),
        "strategy": result.strategy,
    }
    return tensors, record


class ZooBuilder:
    """Finds, builds, verifies and loads the zoo that a :class:`ZooSpec` describes."""

    def __init__(
        self,
        family: TargetFamily,
        task: Task,
        spec: ZooSpec,
        cache_dir: str | Path,
        progress: bool = False,
        *,
        strategy: str = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        self.family, self.task, self.spec = family, task, spec
        self.folder = Path(cache_dir) / "zoo" / spec.dirname
        self.progress = progress
        self.strategy = strategy
        self.device = device
        self._stats_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (ddp_spawn sends the data module, builder included, to its worker processes): no lock."""
        return {k: v for k, v in self.__dict__.items() if k != "_stats_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stats_lock = threading.Lock()

    # ------------------------------------------------------------------ shards
    def _shard_lock(self, index: int) -> FileLock:
        return FileLock(str(self.folder / f".shard-{index:05d}.lock"))

    def _expect(self, index: int) -> dict[str, Any]:
        start, stop = self.spec.shard_bounds(index)
        return {"index": index, "start": start, "stop": stop, "key": self.spec.key, "format_version": FORMAT_VERSION}

    def shard_record(self, index: int) -> dict[str, Any] | None:
        """The record of shard ``index`` if the shard on disk is complete and intact, else None."""
        return shard_is_valid(self.folder, index, self._expect(index))

    def missing_shards(self, shards: Iterable[int] | None = None) -> list[int]:
        """Which of ``shards`` (all by default) are absent, incomplete or damaged on disk."""
        todo = range(self.spec.num_shards) if shards is None else shards
        return [i for i in todo if self.shard_record(i) is None]

    def _check_indices(self, shards: Iterable[int]) -> list[int]:
        out = sorted(set(int(i) for i in shards))
        bad = [i for i in out if not 0 <= i < self.spec.num_shards]
        if bad:
            raise ValueError(
                f"shard indices {bad} out of range: zoo {self.folder.name} has {self.spec.num_shards} shards"
            )
        return out

    def _build_one(self, index: int, wait: bool, stats: BuildStats, advance: Callable[[int], None]) -> bool:
        """Build shard ``index`` under its lock unless it is already intact. False if the lock was busy."""
        start, stop = self.spec.shard_bounds(index)
        lock = self._shard_lock(index)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return False
        try:
            if self.shard_record(index) is not None:
                with self._stats_lock:
                    stats.shards_waited.append(index)
                advance(stop - start)
                return True
            for name in (shard_name(index), record_name(index)):
                if remove_stale_temps(self.folder, name):
                    log.info("Removed temporary files of an interrupted write of %s", name)
            (self.folder / record_name(index)).unlink(missing_ok=True)  # no record may vouch for what we rewrite
            t0 = time.perf_counter()
            tensors, record = build_shard(
                self.family,
                self.task,
                self.spec,
                index,
                strategy=self.strategy,
                device=self.device,
                on_progress=advance,
            )
            write_shard(self.folder, index, tensors, record)
            del tensors
            with self._stats_lock:
                stats.shards_trained.append(index)
                stats.targets_trained += stop - start
            seconds = time.perf_counter() - t0
            log.info(
                "Trained shard %d/%d (%d targets, %s kernel) in %.2fs, %.0f targets/s",
                index + 1,
                self.spec.num_shards,
                stop - start,
                record["strategy"],
                seconds,
                (stop - start) / max(seconds, 1e-9),
            )
        finally:
            lock.release()
        return True

    def build(self, shards: Iterable[int] | None = None, workers: int | None = None) -> BuildStats:
        """Build the missing or damaged shards among ``shards`` (all by default); keep intact ones.

        Shards another process is building are done last: by then they are usually finished,
        and if their builder died, its lock died with it and this process builds them.

        On the CPU, ``workers`` shards (default: torch's thread count) are built at once, each
        with one torch thread. Many small batched ops per step make intra-op threading pay an
        OpenMP barrier per op, which collapses when another process holds a core; shard-level
        threads never wait for each other. A shard's bytes do not depend on it either way.
        """
        from hyperpred.utils.progress import zoo_progress

        stats = BuildStats()
        t0 = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = self._check_indices(range(self.spec.num_shards) if shards is None else shards)
        todo = self.missing_shards(wanted)
        total = sum(stop - start for start, stop in map(self.spec.shard_bounds, todo))
        on_cpu = self.device is None or torch.device(self.device).type == "cpu"
        workers = max(1, min(len(todo), torch.get_num_threads() if workers is None else workers)) if on_cpu else 1
        if todo:
            log.info(
                "Zoo %s: building %d of %d shards (%d targets, %d at a time) in %s",
                self.spec.key[:16],
                len(todo),
                len(wanted),
                total,
                workers,
                self.folder,
            )
        label = f"{self.spec.family['name']}-{self.spec.task['name']} {self.spec.key[:8]}"
        with zoo_progress(self.progress and bool(todo), total, label) as advance:
            if workers == 1:
                busy = [i for i in todo if not self._build_one(i, wait=False, stats=stats, advance=advance)]
                for index in busy:
                    self._build_one(index, wait=True, stats=stats, advance=advance)
            else:
                with torch_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="zoo-shard") as pool:
                    done = pool.map(lambda i: self._build_one(i, wait=False, stats=stats, advance=advance), todo)
                    busy = [i for i, ok in zip(todo, list(done)) if not ok]
                    list(pool.map(lambda i: self._build_one(i, wait=True, stats=stats, advance=advance), busy))
        stats.shards_trained.sort()
        stats.seconds = time.perf_counter() - t0
        return stats

    # ------------------------------------------------------------------ manifest and loading
    def assemble_manifest(self) -> dict[str, Any] | None:
        """Write the manifest once every shard is complete and intact; None if some are missing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / ".manifest.lock")):
            records = [self.shard_record(i) for i in range(self.spec.num_shards)]
            if any(r is None for r in records):
                return None
            remove_stale_temps(self.folder, MANIFEST)
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

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, checked against this builder's spec (format version and key)."""
        path = self.folder / MANIFEST
        manifest = read_json(path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ZooFileError(
                f"{path}: zoo format version {manifest.get('format_version')!r}, this hyperpred reads {FORMAT_VERSION}"
            )
        if manifest.get("key") != self.spec.key:
            raise ZooFileError(f"{path}: manifest key does not match the requested zoo {self.spec.key[:16]}")
        if len(manifest.get("shards", [])) != self.spec.num_shards:
            raise ZooFileError(
                f"{path}: lists {len(manifest.get('shards', []))} shards, the zoo has {self.spec.num_shards}"
            )
        return manifest

    def load(self) -> Zoo:
        """Load a complete zoo, verifying the manifest's format, key and every shard checksum."""
        manifest = self.read_manifest()
        parts = [read_shard(self.folder, rec) for rec in manifest["shards"]]
        tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        del parts
        return Zoo(self.folder, manifest, tensors)

    def _invalidate_damaged(self) -> list[int]:
        """After a failed load: drop the record of every shard that is damaged or differs from the
        manifest, and the manifest itself, so that :meth:`build` rebuilds exactly those shards."""
        try:
            listed = read_json(self.folder / MANIFEST).get("shards", [])
        except ZooFileError:
            listed = []
        listed = listed if isinstance(listed, list) else []
        damaged = []
        for i in range(self.spec.num_shards):
            expected = listed[i].get("sha256") if i < len(listed) and isinstance(listed[i], dict) else None
            with self._shard_lock(i):
                record = self.shard_record(i)
                if record is None or (expected is not None and record["sha256"] != expected):
                    (self.folder / record_name(i)).unlink(missing_ok=True)
                    damaged.append(i)
        (self.folder / MANIFEST).unlink(missing_ok=True)
        return damaged

    def get(self) -> tuple[Zoo, BuildStats]:
        """Load the zoo from the cache, building (or repairing) whatever is missing first."""
        t0 = time.perf_counter()
        if (self.folder / MANIFEST).exists():
            try:
                zoo = self.load()
                log.info(
                    "Zoo %s loaded from cache (%d targets, nothing trained): %s",
                    self.spec.key[:16],
                    len(zoo),
                    self.folder,
                )
                return zoo, BuildStats(loaded_from_cache=True, seconds=time.perf_counter() - t0)
            except ZooFileError as e:
                damaged = self._invalidate_damaged()
                log.warning("Zoo cache damaged (%s); rebuilding shards %s", e, damaged)
        stats = self.build()
        if self.assemble_manifest() is None:  # pragma: no cover - build() completes every shard
            raise ZooFileError(f"{self.folder}: shards still incomplete after building")
        zoo = self.load()
        stats.seconds = time.perf_counter() - t0
        stats.loaded_from_cache = stats.targets_trained == 0  # every shard was on disk already
        if stats.targets_trained:
            rate = stats.targets_trained / max(stats.seconds, 1e-9)
            log.info(
                "Zoo built: %d targets trained in %.1fs (%.0f targets/s)", stats.targets_trained, stats.seconds, rate
            )
        return zoo, stats
