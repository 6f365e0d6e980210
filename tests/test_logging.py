"""Loggers (csv, tensorboard, none; wandb in test_sweeps/test_repro), debug modes, thread policy."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from hyperpred.errors import ConfigError
from hyperpred.run.results import optimized_value
from hyperpred.run.threads import resolve_num_threads
from hyperpred.train import train
from hyperpred.utils.wandb_run import prepare_wandb_config


def _out(cfg) -> Path:
    return Path(cfg.paths.output_dir)


def test_csv_and_tensorboard_loggers_together(make_cfg):
    cfg = make_cfg("logger=[csv,tensorboard]")
    train(cfg)
    out = _out(cfg)
    (metrics_csv,) = (out / "csv").rglob("metrics.csv")
    header = next(csv.reader(metrics_csv.open()))
    assert {"val/query_loss", "train/loss", "test/pred_query_loss"} <= set(header)
    (hparams,) = (out / "csv").rglob("hparams.yaml")
    assert "optimized_metric" in hparams.read_text()  # the resolved config, as plain values
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 5000  # scalars and the weight-histogram image


@pytest.mark.parametrize("predictor", ["mlp", "set_width_agnostic"])
def test_no_logger_still_writes_metrics_and_plots(make_cfg, predictor):
    cfg = make_cfg("logger=none", f"predictor={predictor}")
    train(cfg)
    out = _out(cfg)
    assert (out / "metrics.json").is_file() and (out / "plots" / "weight_histograms.png").is_file()
    assert not (out / "csv").exists() and not (out / "wandb").exists()


@pytest.mark.parametrize(
    ("debug", "extra", "check"),
    [
        (
            "fdr",
            [],
            lambda out: not list(out.rglob("best.ckpt")) and not (out / "plots").exists(),
        ),  # no best checkpoint, no figures
        ("limit", [], lambda out: (out / "checkpoints" / "last.ckpt").is_file()),
        ("overfit", ["trainer.max_epochs=3"], lambda out: (out / "metrics.json").is_file()),
        ("profiler", [], lambda out: any(out.glob("*profile*.txt"))),
    ],
)
def test_debug_modes_run(make_cfg, debug, extra, check):
    cfg = make_cfg(f"debug={debug}", *extra)
    metrics = train(cfg)
    assert check(_out(cfg)), sorted(p.name for p in _out(cfg).iterdir())
    assert any(k.startswith("test/") for k in metrics)


def test_thread_policy_shares_cores_among_parallel_jobs(monkeypatch):
    base = {"num_threads": None, "trainer": {"accelerator": "cpu", "devices": 1}}
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert resolve_num_threads(OmegaConf.create(base)) is None
    assert resolve_num_threads(OmegaConf.create({**base, "num_threads": 3})) == 3
    ddp = resolve_num_threads(OmegaConf.create({**base, "trainer": {"accelerator": "cpu", "devices": 2}}))
    assert ddp is not None and ddp >= 1
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    assert resolve_num_threads(OmegaConf.create(base)) == 1
    with pytest.raises(ConfigError, match="num_threads"):
        resolve_num_threads(OmegaConf.create({**base, "num_threads": -2}))


def test_optimized_metric_is_checked_by_name_and_divergence_fails_the_job():
    cfg = OmegaConf.create({"optimized_metric": "val/query_loss"})
    assert optimized_value(cfg, {"val/query_loss": 0.5}) == 0.5
    with pytest.raises(ConfigError, match="val/query_loss.*val/loss"):
        optimized_value(cfg, {"val/loss": 0.5})
    with pytest.raises(Exception, match="diverged"):
        optimized_value(cfg, {"val/query_loss": float("nan")})
    assert optimized_value(OmegaConf.create({"optimized_metric": None}), {}) is None


def test_wandb_config_group_and_resume_id(make_cfg):
    cfg = make_cfg("logger=wandb")
    assert cfg.logger.wandb.mode in ("offline", "disabled", "online")  # ${oc.env:WANDB_MODE,offline}
    assert list(cfg.logger.wandb.tags) == list(cfg.tags) and cfg.logger.wandb.job_type == cfg.task_name
    prepare_wandb_config(cfg, "abc123")
    assert cfg.logger.wandb.id == "abc123" and cfg.logger.wandb.group is None  # no multirun: no group
    with open_dict(cfg):
        cfg.logger.wandb.group = "mine"
    prepare_wandb_config(cfg, None)
    assert cfg.logger.wandb.group == "mine"
