"""Held-out evaluation: each metric on hand-checkable cases, fine-tuning, splits, plots, experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hyperpred.evaluation.finetune import finetune_steps
from hyperpred.factory import build_parts
from hyperpred.losses import PredictionLoss, masked_weight_mse
from hyperpred.metrics import summarize
from hyperpred.seeding import shared_init
from hyperpred.targets import MLPFamily, arch_tensor
from hyperpred.tasks.sine import SineTask
from hyperpred.train import train
from hyperpred.zoo.spec import TrainRecipe
from hyperpred.zoo.training import per_target_loss, train_targets
from tests.conftest import CONF_DIR

METRICS = (
    "pred_query_loss",
    "trained_query_loss",
    "init_query_loss",
    "zoo_mean_query_loss",
    "ratio_vs_trained",
    "ratio_vs_init",
    "weight_mse",
    "finetune_steps_fraction",
)


def test_summary_on_a_hand_checkable_case():
    per_target = {
        "pred_query_loss": torch.tensor([1.0, 2.0, 6.0]),
        "trained_query_loss": torch.tensor([1.0, 1.0, 2.0]),
        "init_query_loss": torch.tensor([10.0, 10.0, 10.0]),
        "zoo_mean_query_loss": torch.tensor([2.0, 4.0, float("nan")]),  # no zoo mean for the last one
        "weight_mse": torch.tensor([0.0, 1.0, 2.0]),
        "finetune_steps_fraction": torch.tensor([0.0, 0.25, 1.0]),
        "finetune_reached": torch.tensor([1.0, 1.0, 0.0]),
    }
    s = summarize(per_target)
    assert s["pred_query_loss"] == pytest.approx(3.0)
    assert s["zoo_mean_query_loss"] == pytest.approx(3.0)  # NaN skipped
    assert s["ratio_vs_trained"] == pytest.approx(2.0)  # median of 1, 2, 3
    assert s["ratio_vs_init"] == pytest.approx(0.2)  # median of 0.1, 0.2, 0.6
    assert s["ratio_vs_zoo_mean"] == pytest.approx(0.5)  # median of 0.5, 0.5 (lower middle)
    assert s["weight_mse"] == pytest.approx(1.0)
    assert s["finetune_steps_fraction"] == pytest.approx(0.25)
    assert s["finetune_steps_fraction_mean"] == pytest.approx(1.25 / 3)
    assert s["finetune_reached"] == pytest.approx(2 / 3)


def test_predicting_the_trained_weights_gives_ratio_one_and_zero_weight_mse():
    trained = torch.tensor([0.5, 0.1, 0.03])
    s = summarize(
        {
            "pred_query_loss": trained.clone(),
            "trained_query_loss": trained,
            "init_query_loss": trained * 4,
            "zoo_mean_query_loss": trained * 2,
        }
    )
    assert s["ratio_vs_trained"] == 1.0 and s["ratio_vs_init"] == 0.25 and s["ratio_vs_zoo_mean"] == 0.5
    # quarter-integers: every sum and square below is exact in float32, whatever the global RNG state
    params = torch.randint(-8, 8, (3, 5), generator=torch.Generator().manual_seed(0)).float() / 4
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.all(masked_weight_mse(params, params, mask) == 0)
    # padding never counts: garbage there changes nothing, an error in a real entry does
    noisy = params + (~mask) * 100.0
    assert torch.all(masked_weight_mse(noisy, params, mask) == 0)
    noisy[2, 0] += 2.0
    assert masked_weight_mse(noisy, params, mask).tolist() == [0.0, 0.0, 4.0]


def test_functional_scale_weighs_tasks_by_their_support_variance():
    query = torch.tensor([1.0, 1.0])
    support_y = torch.stack([torch.tensor([-1.0, 1.0]), torch.tensor([-10.0, 10.0])]).unsqueeze(-1)
    assert PredictionLoss(functional=1.0, weight=0.0).functional_term(query, support_y) == pytest.approx(1.0)
    scaled = PredictionLoss(functional=1.0, weight=0.0, functional_scale="support_var").functional_term(
        query, support_y
    )
    assert scaled == pytest.approx((1 / 1.001 + 1 / 100.001) / 2)


def _tiny_zoo(steps: int = 150):
    family, task = MLPFamily(), SineTask(n_support=40, n_query=40)
    archs = arch_tensor([[8]] * 6 + [[12]] * 6)
    container = (12,)
    g = torch.Generator().manual_seed(0)
    data = task.sample(family, archs, container, g)
    init = shared_init(family, archs, container, 0)
    recipe = TrainRecipe(steps=steps, lr=0.02)
    result = train_targets(family, task, archs, container, init, data.support_x, data.support_y, recipe, g)
    query = per_target_loss(family, task, result.params, archs, container, data.query_x, data.query_y)
    return family, task, archs, container, data, init, result, query, recipe


def test_finetune_steps_from_trained_is_zero_and_from_init_about_the_trained_steps():
    family, task, archs, container, data, init, result, query, recipe = _tiny_zoo()
    common = dict(
        family=family,
        task=task,
        archs=archs,
        container=container,
        support_x=data.support_x,
        support_y=data.support_y,
        query_x=data.query_x,
        query_y=data.query_y,
        threshold=query,
        lr=recipe.lr,
    )
    from_trained = finetune_steps(flat=family.flatten(result.params), max_steps=recipe.steps, **common)
    assert torch.all(from_trained == 0)
    # from the init, fine-tuning retraces the zoo's run exactly (same kernel, same Adam): the
    # trained query loss is reached at step `steps` at the latest, earlier where it dipped lower
    from_init = finetune_steps(flat=family.flatten(init), max_steps=2 * recipe.steps, **common)
    assert torch.isfinite(from_init).all()
    assert torch.all(from_init <= recipe.steps) and (from_init == recipe.steps).any()
    coarse = finetune_steps(flat=family.flatten(init), max_steps=2 * recipe.steps, check_every=10, **common)
    assert torch.all(
        (coarse >= from_init) & (coarse % 10 == 0) | (coarse == 2 * recipe.steps)
    )  # never earlier than the exact count
    # an impossible target is never reached: inf, not a number that looks like a result
    never = finetune_steps(flat=family.flatten(init), max_steps=5, **{**common, "threshold": torch.zeros_like(query)})
    assert torch.isinf(never).all()


def _compose(overrides: list[str], tmp_path: Path):
    from tests.conftest import compose_config

    return compose_config(overrides, tmp_path)


def test_held_out_splits_report_every_metric_and_draw_the_plots(tmp_path):
    cfg = _compose(
        [
            "predictor=set_width_agnostic",
            "loss=functional",
            "target.archs=[{hidden:4},{hidden:8}]",
            "target.unseen_archs=[{hidden:12}]",
            "features=[activation_stats]",
            "logger=csv",
            "trainer.max_epochs=3",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    for split in ("test", "test_unseen_arch"):
        for key in METRICS:
            assert f"{split}/{key}" in saved, f"{split}/{key}"
            # an unseen architecture has no zoo mean (nothing of it was trained on): null, not a number
            assert (saved[f"{split}/{key}"] is None) == (
                split == "test_unseen_arch" and key == "zoo_mean_query_loss"
            ), f"{split}/{key}"
        assert 0 <= saved[f"{split}/finetune_steps_fraction"] <= 1
    assert metrics["test_unseen_arch/num_tasks"] > 0
    for name in ("test_tasks.png", "test_unseen_arch_tasks.png"):
        png = out / "plots" / name
        assert png.is_file() and png.stat().st_size > 10_000, name


def _experiment(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides], return_hydra_config=False)


def test_sine_generalization_holds_out_wide_architectures():
    cfg = _experiment("sine_generalization")
    assert cfg.seed == 0 and "generalization" in cfg.tags
    assert cfg.zoo.steps >= 2000
    assert [a.hidden for a in cfg.target.archs] == [8, 16, 24, 32]
    assert [a.hidden for a in cfg.target.unseen_archs] == [48, 64]
    assert cfg.predictor.head._target_.endswith("WidthAgnosticDecoder")


@pytest.mark.parametrize(
    "conditioning", ["arch", "activation_stats", "gradient_stats", "set_encoder", "oracle", "noise"]
)
@pytest.mark.parametrize("loss", ["weight", "functional", "mixed"])
def test_every_ablation_cell_composes_and_validates(tmp_path, conditioning, loss):
    cfg = _experiment(
        "feature_ablation",
        f"+conditioning={conditioning}",
        f"loss={loss}",
        f"paths.cache_dir={tmp_path}",
        f"paths.output_dir={tmp_path}",
    )
    parts = build_parts(cfg)  # validates everything cheap
    assert "arch" in parts.features.features  # every cell knows the width, like the seed
    if conditioning == "set_encoder":
        assert cfg.predictor._target_.endswith("SetConditionedPredictor")


@pytest.mark.slow
def test_sine_generalization_meets_its_goals(tmp_path):
    """The full goal run (minutes): the numbers docs/results.md reports."""
    from tests.conftest import compose_config

    cfg = compose_config(["experiment=sine_generalization"], tmp_path, tiny=False)
    m = train(cfg)
    assert m["test/ratio_vs_trained"] <= 2.0 and m["test/ratio_vs_init"] <= 0.01
    assert m["test_unseen_arch/ratio_vs_trained"] <= 3.0
    assert m["test/finetune_steps_fraction"] <= 0.5
