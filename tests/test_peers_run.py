"""The peer baselines through a real Hydra config and Lightning run; ``data.fresh_tasks``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.train import train

PEERS = "baselines=[maml,cnp,nearest,memorization,finetune_curve]"
SMALL = ("baselines.maml.steps=5", "baselines.cnp.steps=5", "baselines.maml.net=[1,8,1]")


def test_baselines_are_off_by_default_and_any_subset_validates(make_cfg):
    assert not make_cfg().get("baselines")
    for subset in ("[nearest]", "[cnp,finetune_curve]"):
        build_parts(make_cfg(f"baselines={subset}"))


def test_every_baseline_lands_in_metrics_json_with_its_plots(make_cfg):
    cfg = make_cfg(PEERS, *SMALL)
    metrics = train(cfg)
    keys = [
        "maml_query_loss_step0",
        "maml_query_loss_step1",
        "maml_query_loss_step10",
        "ratio_vs_maml",
        "cnp_query_loss",
        "ratio_vs_cnp",
        "cnp_us_per_query",
        "pred_us_per_query",
        "nearest_query_loss",
        "nearest_fn_query_loss",
        "ratio_vs_nearest",
        "memorization_share",
        "closer_to_train_share",
        "finetune_curve/pred/step100",
        "finetune_curve/init/step0",
        "finetune_curve/maml/step10",
    ]
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for key in keys:
        assert math.isfinite(metrics[f"test/{key}"]), key
        assert written[f"test/{key}"] == pytest.approx(metrics[f"test/{key}"]), key
    # step 0 from the zoo's init is the init's own query loss: the curve starts where the module's baseline is
    assert metrics["test/finetune_curve/init/step0"] == pytest.approx(metrics["test/init_query_loss"], rel=1e-5)
    assert metrics["test/finetune_curve/pred/step0"] == pytest.approx(metrics["test/pred_query_loss"], rel=1e-5)
    plots = Path(cfg.paths.output_dir) / "plots"
    assert (plots / "test_memorization.png").stat().st_size > 0
    assert (plots / "test_finetune_curve.png").stat().st_size > 0


def test_fast_dev_run_cuts_the_peers_training_to_a_smoke_budget(make_cfg):
    """``trainer.fast_dev_run`` checks that a run works: MAML and the CNP train for 2 steps, not their budgets."""
    metrics = train(make_cfg("baselines=[maml,cnp]", "baselines.maml.net=[1,8,1]", "++trainer.fast_dev_run=true"))
    assert metrics["test/maml_steps"] == 2 and metrics["test/cnp_steps"] == 2
    assert math.isfinite(metrics["test/maml_query_loss_step10"]) and math.isfinite(metrics["test/cnp_query_loss"])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("+baselines.knn.k=3",), "baselines.knn"),
        ((PEERS, "baselines.maml.steps=0"), "baselines.maml.steps"),
        ((PEERS, "baselines.maml.net=conv"), "baselines.maml.net"),
        (("data.fresh_tasks=true", "loss=mixed"), "data.fresh_tasks"),
    ],
)
def test_bad_baseline_config_fails_before_any_work(make_cfg, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_parts(make_cfg(*overrides))


def test_fresh_tasks_trains_on_new_tasks_every_step(make_cfg):
    cfg = make_cfg("data.fresh_tasks=true", "loss=functional")
    parts = build_parts(cfg)
    dm = ZooDataModule(parts.builder, parts.features, **cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = [b["support_x"] for b in loader]
    loader.sampler.set_epoch(1)
    second = [b["support_x"] for b in loader]
    zoo_x = dm.splits["train"]["support_x"]
    assert len(first) == len(dm._loader("train", shuffle=True))  # an epoch is as long as the zoo's
    for batch in first:  # none of the sampled tasks is a zoo task
        assert not (batch.unsqueeze(1) == zoo_x.unsqueeze(0)).all(-1).all(-1).any()
    assert not torch.equal(first[0], second[0])
    again = [b["support_x"] for b in dm.train_dataloader()]  # same seed and epoch: the same batches (resumable)
    assert torch.equal(again[0], first[0])
    metrics = train(cfg)
    assert math.isfinite(metrics["test/pred_query_loss"])


def test_report_turns_a_k_sweep_into_the_ladder_table(tmp_path):
    import yaml

    from hyperpred.report import build_report

    sweep = tmp_path / "sweep"
    for num, k in enumerate((5, 20, 10)):
        job = sweep / str(num)
        job.mkdir(parents=True)
        (job / "overrides.yaml").write_text(yaml.safe_dump([f"task.n_support={k}", "experiment=sine_fewshot"]))
        metrics = {"test/pred_query_loss": 1.0 / k, "test/maml_query_loss_step10": 2.0 / k, "test/cnp_query_loss": 0.1}
        (job / "metrics.json").write_text(json.dumps(metrics))
    md = build_report(sweep).markdown
    ladder = md.split("## Few-shot ladder")[1].splitlines()
    assert "| task.n_support | predicted | MAML-10 | CNP |" in ladder
    rows = [line for line in ladder if line.startswith("| 5") or line.startswith("| 10") or line.startswith("| 20")]
    assert rows == ["| 5 | 0.2 | 0.4 | 0.1 |", "| 10 | 0.1 | 0.2 | 0.1 |", "| 20 | 0.05 | 0.1 | 0.1 |"]
