"""``hydra.job.chdir=true``: runs share one zoo cache and relative ``ckpt_path`` means the folder the command ran in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hyperpred.run.paths import absolute_paths
from tests.conftest import ROOT, TINY


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Like conftest.run_script but without HYPERPRED_ROOT, so that paths.root_dir is the relative default."""
    env = {k: v for k, v in os.environ.items() if k != "HYPERPRED_ROOT"}
    env.update({"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_chdir_runs_share_the_zoo_and_resume_and_eval_from_relative_checkpoints(tmp_path):
    tiny = [o for o in TINY if not o.startswith("trainer.max_epochs")]
    first = _run(
        "train.py", *tiny, "trainer.max_epochs=1", "hydra.job.chdir=true", "hydra.run.dir=outputs/a", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    # the second run resumes the first from a path relative to where the command runs, not to its run folder
    resumed = _run(
        "train.py",
        *tiny,
        "trainer.max_epochs=2",
        "hydra.job.chdir=true",
        "hydra.run.dir=outputs/b",
        "ckpt_path=outputs/a/checkpoints/last.ckpt",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((tmp_path / "outputs" / r / "run.json").read_text()) for r in "ab")
    assert a["zoo"]["targets_trained"] == 96 and not a["zoo"]["loaded_from_cache"]
    assert b["zoo"]["loaded_from_cache"] and b["zoo"]["targets_trained"] == 0  # one zoo build for both runs
    assert a["zoo"]["folder"] == b["zoo"]["folder"]
    assert Path(a["zoo"]["folder"]).is_relative_to(tmp_path / "outputs" / "cache")
    assert not list((tmp_path / "outputs" / "a").rglob("cache")) and not list(
        (tmp_path / "outputs" / "b").rglob("cache")
    )
    assert b["resumed_from"] == str(tmp_path / "outputs/a/checkpoints/last.ckpt")
    assert json.loads((tmp_path / "outputs/b/metrics.json").read_text())["fit/steps"] == 10  # 5 + 5 after resume

    ev = _run(
        "eval.py",
        "ckpt_path=outputs/b/checkpoints/best.ckpt",
        "timing=false",
        "hydra.job.chdir=true",
        "hydra.run.dir=outputs/eval",
        cwd=tmp_path,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "test/pred_query_loss" in json.loads((tmp_path / "outputs/eval/metrics.json").read_text())
    assert not list((tmp_path / "outputs" / "eval").rglob("cache"))


def test_absolute_paths_keeps_absolute_values_and_interpolations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create(
        {
            "ckpt_path": "runs/x/last.ckpt",
            "paths": {
                "root_dir": ".",
                "log_dir": "${paths.root_dir}/outputs",
                "cache_dir": "${paths.log_dir}/cache",
                "data_dir": "/abs/data",
                "output_dir": "${hydra:runtime.output_dir}",  # Hydra's own, absolute: left alone
            },
        }
    )
    absolute_paths(cfg)
    assert cfg.ckpt_path == str(tmp_path / "runs/x/last.ckpt")
    assert cfg.paths.root_dir == str(tmp_path)
    assert cfg.paths.cache_dir == f"{tmp_path}/outputs/cache"
    assert OmegaConf.to_container(cfg.paths)["cache_dir"] == "${paths.log_dir}/cache"  # still follows root_dir
    assert cfg.paths.data_dir == "/abs/data"
