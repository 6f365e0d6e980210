"""The zoo under real processes: SIGKILL mid-build, concurrent builders, damage, sharded jobs.

Every build here runs ``scripts/build_zoo.py`` in its own process; the reference is an
uninterrupted build of the same config, and "identical" means every byte of every shard, record
and manifest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperpred.factory import build_parts
from tests.conftest import ROOT, TINY, compose_config, run_script

#: Enough work per shard (autograd kernel, 8 shards) that a kill lands mid-build.
SLOW_ZOO = [
    "zoo.num_targets=320",
    "zoo.shard_size=40",
    "zoo.steps=200",
    "zoo.strategy=autograd",
    "task.n_support=64",
    "num_threads=1",
]
SHARDS = 8


def overrides(cache: Path, *extra: str) -> list[str]:
    return [*TINY, *SLOW_ZOO, f"paths.cache_dir={cache}", *extra]


def start_build(cache: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HYPERPRED_ROOT": str(run_dir.parent)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "build_zoo.py"), *overrides(cache, f"hydra.run.dir={run_dir}", *extra)],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def zoo_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def job_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "zoo_job.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """An uninterrupted build of the slow zoo, in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    builder = build_parts(compose_config(overrides(tmp / "cache"), tmp, tiny=False)).builder
    _, stats = builder.get()
    assert stats.targets_trained == 320
    return builder.folder, zoo_bytes(builder.folder)


def test_sigkill_mid_build_then_rerun_is_byte_identical(tmp_path, reference):
    ref_folder, expected = reference
    folder = tmp_path / "cache" / "zoo" / ref_folder.name
    proc = start_build(tmp_path / "cache", tmp_path / "run1")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(folder.glob("shard-*.json"))) < 1 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be killed: make SLOW_ZOO slower"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in folder.glob("shard-*.json"))
    assert 1 <= len(done) < SHARDS and not (folder / "manifest.json").exists()
    kept = {name: (folder / name).read_bytes() for name in done}

    proc = start_build(tmp_path / "cache", tmp_path / "run2")
    out = finish(proc)
    assert out.strip().splitlines()[-1] == str(folder.resolve())
    info = job_info(tmp_path / "run2")
    finished_before = {int(name[6:11]) for name in done}
    assert not finished_before & set(info["shards_trained"]), "finished shards must be kept, not retrained"
    assert set(info["shards_trained"]) | finished_before == set(range(SHARDS))
    assert all((folder / name).read_bytes() == data for name, data in kept.items())
    assert not list(folder.glob("*.tmp"))
    assert zoo_bytes(folder) == expected


def test_two_processes_started_together_build_each_shard_once(tmp_path, reference):
    ref_folder, expected = reference
    procs = {name: start_build(tmp_path / "cache", tmp_path / name) for name in ("a", "b")}
    for proc in procs.values():
        finish(proc)
    trained = {name: job_info(tmp_path / name)["shards_trained"] for name in procs}
    assert sorted(trained["a"] + trained["b"]) == list(range(SHARDS)), trained  # every shard trained exactly once
    assert sum(job_info(tmp_path / name)["targets_trained"] for name in procs) == 320
    assert zoo_bytes(tmp_path / "cache" / "zoo" / ref_folder.name) == expected


def test_a_corrupted_shard_is_detected_and_rebuilt(tmp_path, reference):
    ref_folder, expected = reference
    folder = tmp_path / "cache" / "zoo" / ref_folder.name
    folder.mkdir(parents=True)
    for name, data in expected.items():
        (folder / name).write_bytes(data)
    damaged = bytearray(expected["shard-00003.safetensors"])
    damaged[-5] ^= 0x01  # one bit of one parameter
    (folder / "shard-00003.safetensors").write_bytes(bytes(damaged))
    finish(start_build(tmp_path / "cache", tmp_path / "run"))
    assert job_info(tmp_path / "run")["shards_trained"] == [3]
    assert zoo_bytes(folder) == expected


def multirun_build(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    cache = tmp_path / "cache"
    result = run_script(
        "build_zoo.py",
        "-m",
        "zoo.shard_index=0,1",
        "zoo.num_shards=2",
        *TINY,
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "num_threads=1",
        *extra,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cache, result.stdout


def test_sharded_multirun_builds_the_zoo_that_training_loads(tmp_path):
    cache, stdout = multirun_build(tmp_path)
    jobs = [json.loads((tmp_path / "sweep" / str(i) / "zoo_job.json").read_text()) for i in (0, 1)]
    assert jobs[0]["shards"] == [0] and jobs[1]["shards"] == [1]  # TINY: 96 targets in shards of 48
    assert jobs[0]["shards_trained"] == [0] and jobs[1]["shards_trained"] == [1] and jobs[1]["complete"]
    folder = Path(jobs[0]["folder"])
    assert stdout.strip().splitlines()[-1] == str(folder)
    cfg = compose_config([f"paths.cache_dir={cache}"], tmp_path)
    builder = build_parts(cfg).builder
    assert builder.folder.resolve() == folder
    zoo, stats = builder.get()
    assert stats.loaded_from_cache and stats.targets_trained == 0 and len(zoo) == 96


@pytest.mark.slow
def test_train_script_loads_the_multirun_zoo_without_training(tmp_path):
    cache, _ = multirun_build(tmp_path)
    result = run_script(
        "train.py",
        *TINY,
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={tmp_path / 'train'}",
        "num_threads=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    info = json.loads((tmp_path / "train" / "run.json").read_text())
    assert info["zoo"]["loaded_from_cache"] and info["zoo"]["targets_trained"] == 0
