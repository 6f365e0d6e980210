"""End to end through Hydra composition and a real Lightning Trainer, tiny and on CPU."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.train import train
from tests.conftest import run_script

BASELINES = (
    "pred_query_loss",
    "trained_query_loss",
    "init_query_loss",
    "zoo_mean_query_loss",
    "weight_mse",
    "ratio_vs_trained",
    "ratio_vs_init",
)


def test_fast_dev_run_through_hydra(make_cfg, caplog):
    with caplog.at_level(logging.INFO):
        metrics = train(make_cfg("debug=fdr"))
    assert metrics["test/pred_query_loss"] > 0
    assert "test/zoo_mean_query_loss" in metrics
    assert "GPU available" in caplog.text  # Lightning's own start-up lines still reach the log ...
    assert "litlogger" not in caplog.text  # ... its advertisement does not


def test_tiny_run_writes_config_checkpoint_and_metrics(make_cfg):
    cfg = make_cfg("logger=csv")
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    for key in BASELINES:
        assert f"test/{key}" in saved, key
    assert saved["test/pred_query_loss"] == pytest.approx(metrics["test/pred_query_loss"])
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert (out / "config_resolved.yaml").exists()
    assert list((out / "csv").rglob("metrics.csv")), "the csv logger wrote nothing"
    run = json.loads((out / "run.json").read_text())
    assert run["zoo"]["key"] and run["zoo"]["targets_trained"] == cfg.zoo.num_targets


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "target=conv",
            "task=teacher",
            "target.family.image_size=6",
            "task.n_support=4",
            "task.n_query=4",
            "loss=functional",
        ],
        ["target=linear", "task=teacher", "features=[arch,gradient_stats]"],
        ["target=linear", "task=sinsum", "loss=mixed", "features=[activation_stats,oracle]"],
        ["task=teacher", "features=[arch,gradient_stats]", "loss=functional"],
    ],
    ids=["conv-teacher-functional", "linear-teacher-grad", "linear-sinsum-mixed", "mlp-teacher-grad"],
)
def test_swapping_groups_runs(make_cfg, overrides):
    metrics = train(make_cfg(*overrides))
    assert metrics["test/pred_query_loss"] == metrics["test/pred_query_loss"]  # not NaN


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["target=conv", "task=sine"], ["task=sine", "target=conv"]),
        (["target=linear", "task=sine"], ["task=sine", "target=linear"]),
        (["target=conv", "task=sinsum"], ["task=sinsum", "target=conv"]),
        (["target.archs=[{hidden:0}]"], ["target.archs[0]", "hidden"]),
        (["target.unseen_archs=[{hidden:8}]"], ["target.unseen_archs", "target.archs"]),
        (["zoo.init=fancy"], ["zoo.init", "fancy"]),
        (["zoo.num_targets=-3"], ["zoo.num_targets"]),
    ],
)
def test_conflicting_choices_fail_at_once_naming_the_keys(make_cfg, overrides, keys):
    with pytest.raises(ConfigError) as err:
        build_parts(make_cfg(*overrides))
    for key in keys:
        assert key in str(err.value)


@pytest.mark.parametrize("experiment", ["seed_ex1", "seed_ex2", "seed_ex3"])
def test_seed_experiments_run_tiny(make_cfg, experiment):
    extra = ["target.family.image_size=5", "task.n_support=4", "task.n_query=2"] if experiment == "seed_ex2" else []
    cfg = make_cfg(f"experiment={experiment}", *extra)
    assert "seed" in cfg.tags
    metrics = train(cfg)
    for key in BASELINES:
        assert f"test/{key}" in metrics, key


def test_cli_runs_then_reuses_its_zoo(tmp_path):
    """The real entry point, twice: the second run says it loaded the zoo and trains none."""
    args = [
        "zoo.num_targets=64",
        "zoo.shard_size=32",
        "zoo.steps=5",
        "trainer.max_epochs=1",
        "logger=csv",
        "zoo.progress=false",
        "trainer.enable_progress_bar=false",
    ]
    first = run_script("train.py", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "building" in (first.stderr + first.stdout).lower()
    second = run_script("train.py", *args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "loaded from cache" in second.stderr + second.stdout
    runs = sorted((tmp_path / "outputs" / "runs" / "train").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "metrics.json").exists() and (run / ".hydra" / "config.yaml").exists()
    assert json.loads((runs[1] / "metrics.json").read_text())["zoo/targets_trained"] == 0


def test_cli_bad_combination_is_one_clear_line(tmp_path):
    proc = run_script("train.py", "target=conv", "task=sine", cwd=tmp_path)
    assert proc.returncode != 0
    assert "task=sine does not fit target=conv" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs" / "cache").exists(), "nothing may be built for a bad config"


def test_last_checkpoint_is_the_last_epoch_and_best_is_kept(make_cfg):
    cfg = make_cfg("trainer.max_epochs=3")
    train(cfg)
    import torch

    folder = Path(cfg.paths.output_dir) / "checkpoints"
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2, "last.ckpt must be the end of the last epoch, whatever the best was"
    best = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] <= 2 and (folder / "best.ckpt").exists(), "the best checkpoint is kept next to it"
