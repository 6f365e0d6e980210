"""The predicted model as a function: ``load_predictor`` → ``predict`` / ``materialize``.

Checkpoints come from real tiny training runs (digits, linear and conv classifiers), made once per
test session and shared with tests/test_digits.py and tests/test_predict_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyperpred import load_predictor
from hyperpred.api import TrainedPredictor
from hyperpred.errors import ConfigError
from hyperpred.targets import arch_tensor
from hyperpred.train import train
from tests.conftest import compose_config
from tests.test_digits import tiny_checkpoint

ARCHS = {
    "digits_linear": {"in_features": 64, "out_features": 2},
    "digits_conv": {"in_channels": 1, "channels": 8, "kernel_size": 3, "classes": 2},
}


@pytest.fixture(scope="session")
def linear_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp(), "digits_linear")


@pytest.fixture(scope="session")
def conv_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp(), "digits_conv")


def new_tasks(p: TrainedPredictor, count: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Support images, integer labels and query images of ``count`` fresh digit tasks."""
    archs = arch_tensor([p.container] * count)
    batch = p.task.sample(p.family, archs, p.container, torch.Generator().manual_seed(seed))
    return batch.support_x, batch.support_y.argmax(-1), batch.query_x


@pytest.mark.parametrize("experiment", ["digits_linear", "digits_conv"])
def test_materialize_equals_functional_forward(request, experiment):
    ckpt = request.getfixturevalue("linear_ckpt" if experiment == "digits_linear" else "conv_ckpt")
    p = load_predictor(ckpt)
    arch = ARCHS[experiment]
    xs, labels, xq = new_tasks(p, 1)
    model = p.materialize(arch, (xs[0], labels[0]))
    assert isinstance(model, torch.nn.Module) and not model.training
    flat = p.predict_flat(arch_tensor([p.parse_arch(arch)]), xs, F.one_hot(labels, 2).float())
    expected = p.family.forward(p.family.unflatten(flat, p.container), xq, arch_tensor([p.container]))[0]
    with torch.no_grad():
        assert torch.allclose(model(xq[0]), expected, atol=1e-5)
    state = p.predict(arch, (xs[0], labels[0]))
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_predict_accepts_a_batch_and_agrees_with_single_calls(linear_ckpt):
    p = load_predictor(linear_ckpt)
    arch = ARCHS["digits_linear"]
    xs, labels, _ = new_tasks(p, 3)
    batch = p.predict(arch, (xs, labels))
    pairs = p.predict([arch] * 3, [(xs[i], labels[i]) for i in range(3)])
    models = p.materialize(arch, (xs.flatten(2), F.one_hot(labels, 2)))  # flattened images, one-hot labels
    assert isinstance(batch, list) and len(batch) == 3 and len(models) == 3
    for i in range(3):
        single = p.predict(arch, (xs[i].numpy(), labels[i].tolist()))
        for k in single:
            assert torch.allclose(batch[i][k], single[k], atol=1e-6)
            assert torch.allclose(pairs[i][k], single[k], atol=1e-6)
            assert torch.allclose(models[i].state_dict()[k], single[k], atol=1e-6)
    assert not torch.allclose(batch[0]["weight"], batch[1]["weight"]), "different tasks got the same classifier"


def test_checkpoint_of_one_family_rejects_another_familys_arch(linear_ckpt):
    p = load_predictor(linear_ckpt)
    xs, labels, _ = new_tasks(p, 1)
    with pytest.raises(ConfigError, match=r"family 'linear'.*that is an architecture of family 'conv_classifier'"):
        p.predict(ARCHS["digits_conv"], (xs[0], labels[0]))
    with pytest.raises(ConfigError, match="predicts targets of family 'linear', not 'conv_classifier'"):
        p.predict({"family": "conv_classifier", **ARCHS["digits_conv"]}, (xs[0], labels[0]))
    with pytest.raises(ConfigError, match="in_features=64; got in_features=32"):
        p.predict({"in_features": 32, "out_features": 2}, (xs[0], labels[0]))
    with pytest.raises(ConfigError, match="out_features=3 is larger"):
        p.predict({"in_features": 64, "out_features": 3}, (xs[0], labels[0]))


def test_bad_support_data_fails_naming_the_problem(linear_ckpt):
    p = load_predictor(linear_ckpt)
    arch = ARCHS["digits_linear"]
    xs, labels, _ = new_tasks(p, 1)
    x, y = xs[0], labels[0]
    with pytest.raises(ConfigError, match=r"support: x has shape \(20, 63\).*inputs of shape \(64,\)"):
        p.predict(arch, (x[:, :63], y))
    bad = x.clone()
    bad[3, 5] = float("nan")
    with pytest.raises(ConfigError, match=r"support: 1 NaN value\(s\) in x \(samples \[3\]\)"):
        p.predict(arch, (bad, y))
    with pytest.raises(ConfigError, match="class label 2 .* outside 0..1"):
        p.predict(arch, (x, torch.full_like(y, 2)))
    with pytest.raises(ConfigError, match=r"y holds \(1, 19\) class labels, x holds \(1, 20\) samples"):
        p.predict(arch, (x, y[:19]))
    with pytest.raises(ConfigError, match=r"support\[1\]: 1 NaN"):
        p.predict(arch, [(x, y), (bad, y)])


def test_load_predictor_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        load_predictor(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_predictor(junk)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, foreign)
    with pytest.raises(ConfigError, match="not a hyperpred predictor checkpoint"):
        load_predictor(foreign)


def test_checkpoint_carries_family_features_and_normalization(linear_ckpt):
    ckpt = torch.load(linear_ckpt, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert {"family", "task", "features", "probe", "container", "run_config"} <= set(hp)
    assert {"feature_mean", "feature_std", "param_mean", "param_std"} <= set(ckpt["state_dict"])
    p = load_predictor(linear_ckpt)
    assert p.describe()["family"]["name"] == "linear" and p.describe()["task"]["name"] == "digits"


def test_width_agnostic_checkpoint_materializes_wider_targets(tmp_path):
    """A width-agnostic predictor answers for widths beyond its training container (here 16 → 64)."""
    train(
        compose_config(["predictor=width_agnostic", "logger=none", "target.archs=[{hidden:8},{hidden:16}]"], tmp_path)
    )
    p = load_predictor(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert p.width_agnostic and p.container == (16,)
    x = torch.linspace(-5, 5, 40).unsqueeze(1)
    y = 2 * torch.sin(x + 1)
    model = p.materialize({"hidden": 64}, (x, y))
    assert model.hidden.out_features == 64
    flat = p.predict_flat(arch_tensor([(64,)]), x[None], y[None], container=(64,))
    expected = p.family.forward(p.family.unflatten(flat, (64,)), x[None], arch_tensor([(64,)]))[0]
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-5)
