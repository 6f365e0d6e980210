"""Two rows of docs/architecture.md's "where to add X" table, done for real: a feature and a predictor.

Each is exactly what the table says: one Python file (here, this test file: the classes below,
registered with ``@register``) and one YAML in a config group, here in a user's own config folder
added to Hydra's search path, the checkout untouched. They are chosen from the command line
alone (``features=[arch,support_stats] predictor=linear_head``), train in a real tiny run, and the
checkpoint loads back through ``load_predictor`` (which builds only registered classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch import Tensor, nn

from hyperpred import load_predictor
from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.predictors.base import Predictor
from hyperpred.registry import register
from hyperpred.train import train
from tests.conftest import CONF_DIR, TINY


@register("feature")
class SupportStats(Feature):
    """Mean and standard deviation of each task's support targets."""

    name = "support_stats"

    def dim(self) -> int:
        return 2

    def __call__(self, batch: FeatureBatch) -> Tensor:
        y = batch["support_y"].flatten(1)
        return torch.stack([y.mean(1), y.std(1)], dim=1)


@register("predictor")
class LinearHead(Predictor):
    """One linear map from the standardized conditioning to the (normalized) parameters."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:
        return self.linear(z)


USER_CONFIGS = {
    "features/support_stats.yaml": "support_stats:\n  _target_: tests.test_extending.SupportStats\n",
    "predictor/linear_head.yaml": "_target_: tests.test_extending.LinearHead\nin_dim: ???\nout_dim: ???\n",
}


def test_a_new_feature_and_a_new_predictor_are_a_file_and_a_yaml_each(tmp_path):
    user = tmp_path / "my_configs"
    for name, text in USER_CONFIGS.items():
        (user / name).parent.mkdir(parents=True, exist_ok=True)
        (user / name).write_text(text)
    overrides = [*TINY, f"hydra.searchpath=[file://{user}]", "features=[arch,support_stats]", "predictor=linear_head"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")

    metrics = train(cfg)
    assert metrics["test/num_tasks"] > 0 and torch.isfinite(torch.tensor(metrics["test/pred_query_loss"]))

    p = load_predictor(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert isinstance(p.module.predictor, LinearHead)
    assert isinstance(p.features.features["support_stats"], SupportStats)
    assert p.features.dims["support_stats"] == 2
