"""Reproducibility: same config + seed → identical metrics; provenance in the run folder; exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import open_dict

from hyperpred.evaluation.evaluator import first_occurrences
from hyperpred.lit.sampler import GlobalBatchSampler
from hyperpred.run.checkpoint import CKPT_KEY, read_identity
from hyperpred.train import train


def _run(make_cfg, out: Path, *overrides: str) -> dict[str, float]:
    cfg = make_cfg(*overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return train(cfg)


def _without_timing(metrics: dict[str, float]) -> dict[str, float]:
    # zoo build seconds and cache hits, the fit's wall time (fit/steps stays: it must match too)
    return {
        k: v
        for k, v in metrics.items()
        if not k.startswith("zoo/") and k not in ("fit/seconds", "fit/steps_per_second")
    }


def test_same_config_and_seed_give_identical_metrics_and_full_provenance(make_cfg, tmp_path):
    first = _run(make_cfg, tmp_path / "a", "seed=3")
    second = _run(make_cfg, tmp_path / "b", "seed=3")
    assert _without_timing(first) == _without_timing(second)  # bitwise, not approximately
    assert "val/query_loss" in first and "test/pred_query_loss" in first
    other_seed = _run(make_cfg, tmp_path / "c", "seed=4")
    assert other_seed["val/query_loss"] != first["val/query_loss"]

    run = tmp_path / "a"
    info = json.loads((run / "run.json").read_text())
    assert len(info["git_commit"]) == 40 and info["git"]["dirty"] in (True, False)
    assert {"torch", "pytorch_lightning", "hydra", "omegaconf"} <= set(info["versions"])
    assert len(info["zoo"]["key"]) == 64 and len(info["zoo"]["content_hash"]) == 64
    assert info["zoo"]["content_hash"] == json.loads((tmp_path / "b" / "run.json").read_text())["zoo"]["content_hash"]
    resolved = yaml.safe_load((run / "config_resolved.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["zoo"]["num_targets"] == 96
    assert (run / "overrides.yaml").is_file()
    assert json.loads((run / "metrics.json").read_text())["val/query_loss"] == first["val/query_loss"]
    assert (run / "plots" / "weight_histograms.png").stat().st_size > 1000


def test_resume_from_last_ckpt_matches_an_uninterrupted_run_and_keeps_the_wandb_id(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # ids are still assigned and honoured; nothing is written
    straight = _run(make_cfg, tmp_path / "straight", "trainer.max_epochs=3")
    _run(make_cfg, tmp_path / "part", "trainer.max_epochs=2", "logger=wandb")
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    identity = read_identity(last)
    assert identity["wandb_id"] and len(identity["zoo_hash"]) == 64
    assert torch.load(last, weights_only=True)["epoch"] == 1

    resumed = _run(make_cfg, tmp_path / "resumed", "trainer.max_epochs=3", "logger=wandb", f"ckpt_path={last}")
    assert _without_timing(resumed) == _without_timing(straight)  # same batches, same optimizer state
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert info["wandb"]["id"] == identity["wandb_id"]
    assert info["resumed_from"] == str(last)
    assert (
        torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)[CKPT_KEY]["wandb_id"]
        == identity["wandb_id"]
    )


def test_global_batches_are_the_same_for_any_world_size():
    """DDP ranks together see exactly the single-process batches (plus repeats that pad the last one)."""
    single = list(GlobalBatchSampler(23, 8, shuffle=True, seed=5))
    for world in (2, 3):
        ranks = [GlobalBatchSampler(23, 8, shuffle=True, seed=5, rank=r, world_size=world) for r in range(world)]
        per_rank = [list(s) for s in ranks]
        assert len({len(b) for b in per_rank}) == 1  # every rank steps equally often
        for step, batches in enumerate(zip(*per_rank)):
            merged = torch.tensor([i for b in batches for i in b])
            assert sorted(set(merged.tolist())) == sorted(single[step])
            assert len({len(b) for b in batches}) == 1
    epoch0 = list(GlobalBatchSampler(23, 8, shuffle=True, seed=5))
    s = GlobalBatchSampler(23, 8, shuffle=True, seed=5)
    s.set_epoch(1)
    assert list(s) != epoch0 and list(GlobalBatchSampler(23, 8, shuffle=True, seed=5)) == epoch0


def test_first_occurrences_drops_ddp_padding_in_order():
    index = torch.tensor([4, 7, 1, 4, 9, 7])
    assert first_occurrences(index).tolist() == [0, 1, 2, 4]


PAPER = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("paper_*.yaml"))


@pytest.mark.parametrize("paper", PAPER)
def test_paper_configs_are_their_experiment_plus_paper_tags(paper):
    """experiment=paper_X reproduces experiment=X exactly (docs/results.md gives the command per table)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={paper}"], return_hydra_config=True)
        base = compose("train", overrides=[f"experiment={paper.removeprefix('paper_')}"], return_hydra_config=True)
    assert "paper" in cfg.tags
    text = (CONF_DIR / "experiment" / f"{paper}.yaml").read_text()
    free = ("tags", "hydra", "logger")  # paper runs may pin the logger and the output folder of the documented command
    plain = {k: v for k, v in OmegaConf.to_container(cfg).items() if k not in free}
    plain_base = {k: v for k, v in OmegaConf.to_container(base).items() if k not in free}
    assert plain == plain_base
    assert cfg.hydra.sweeper.params == base.hydra.sweeper.params and cfg.hydra.mode == base.hydra.mode
    assert f"python scripts/train.py experiment={paper}" in text and (
        "docs/results.md" in text or "docs/tutorial.md" in text
    )
