"""Classification on bundled scikit-learn data: digits and tabular tasks, the conv classifier family,
cross-entropy/accuracy, the split by task group, and tiny end-to-end digit experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.targets import ConvClassifierFamily, LinearFamily, arch_tensor
from hyperpred.tasks import DigitsTask, TabularTask, masked_accuracy, masked_cross_entropy
from hyperpred.tasks.digits import digits_arrays
from hyperpred.train import train
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def digits() -> DigitsTask:
    return DigitsTask(n_support=20, n_query=30)


def _true_labels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row index in the full data set and true digit of each image ``[n, 64]`` (by exact match)."""
    images, labels = digits_arrays()
    rows = (x.reshape(len(x), -1).unsqueeze(1) == images.unsqueeze(0)).all(-1).float().argmax(1)
    return rows, labels[rows]


def test_digit_tasks_are_balanced_labelled_and_disjoint(digits):
    fam = LinearFamily()
    archs = arch_tensor([(64, 2), (64, 3), (64, 5), (64, 2)])
    container = fam.container(archs.tolist())
    batch = digits.sample(fam, archs, container, torch.Generator().manual_seed(0))
    assert (
        batch.support_x.shape == (4, 20, 64)
        and batch.support_y.shape == (4, 20, 5)
        and batch.query_y.shape == (4, 30, 5)
    )
    for b, k in enumerate([2, 3, 5, 2]):
        classes = batch.descriptor[b]
        assert (classes[:k] >= 0).all() and (classes[k:] == -1).all() and len(set(classes[:k].tolist())) == k
        rows_s, digit_s = _true_labels(batch.support_x[b])
        rows_q, digit_q = _true_labels(batch.query_x[b])
        lab_s, lab_q = batch.support_y[b].argmax(-1), batch.query_y[b].argmax(-1)
        assert (lab_s < k).all() and torch.bincount(lab_s, minlength=k).tolist() == [
            20 // k + (i < 20 % k) for i in range(k)
        ]
        assert torch.equal(classes[lab_s].long(), digit_s) and torch.equal(classes[lab_q].long(), digit_q)
        assert len(set(rows_s.tolist())) == 20, "an image repeats within a support set"
        assert not set(rows_s.tolist()) & set(rows_q.tolist()), "support and query share an image"


def test_pairs_in_either_order_share_a_group(digits):
    desc = torch.tensor([[3.0, 8.0], [8.0, 3.0], [1.0, 7.0], [3.0, 7.0]])
    g = digits.split_groups(desc)
    assert g[0] == g[1] and len({int(g[0]), int(g[2]), int(g[3])}) == 3


def test_conv_classifier_input_shape_and_compatibility(digits):
    fam = ConvClassifierFamily(image_size=8, padding=1)
    archs = arch_tensor([(1, 4, 3, 2)] * 3)
    batch = digits.sample(fam, archs, (1, 4, 3, 2), torch.Generator().manual_seed(1))
    assert batch.support_x.shape == (3, 20, 1, 8, 8)
    with pytest.raises(ConfigError, match="task=digits does not fit target=conv_classifier"):
        digits.check_compatible(ConvClassifierFamily(image_size=10), [(1, 4, 3, 2)])
    with pytest.raises(ConfigError, match="2..10"):
        digits.check_compatible(LinearFamily(), [(64, 11)])
    with pytest.raises(ConfigError, match="task.classes"):
        DigitsTask(classes=[3])


def test_masked_cross_entropy_and_accuracy_ignore_padded_classes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 4, generator=g)
    labels = torch.randint(0, 2, (2, 7), generator=g)
    y = F.one_hot(labels, 4).float()
    mask = torch.tensor([[True, True, False, False], [True, True, False, False]])
    expect = torch.stack([F.cross_entropy(logits[b, :, :2], labels[b]) for b in range(2)])
    assert torch.allclose(masked_cross_entropy(logits, y, mask), expect, atol=1e-6)
    huge = logits.clone()
    huge[..., 2:] = 1e6  # padded classes must not win the arg-max nor enter the softmax
    assert torch.allclose(masked_cross_entropy(huge, y, mask), expect, atol=1e-6)
    acc = (logits[..., :2].argmax(-1) == labels).float().mean(1)
    assert torch.equal(masked_accuracy(huge, y, mask), acc)
    assert torch.allclose(
        masked_cross_entropy(logits, y),
        torch.stack([F.cross_entropy(logits[b], labels[b]) for b in range(2)]),
        atol=1e-6,
    )


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_conv_classifier_module_matches_functional_forward_and_padding(pool):
    fam = ConvClassifierFamily(image_size=8, padding=1, pool=pool)
    archs = arch_tensor([(1, 3, 3, 2), (1, 5, 3, 4)])
    container = fam.container(archs.tolist())
    g = torch.Generator().manual_seed(0)
    params = {
        k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in fam.init(archs, container, g).items()
    }  # padded entries are garbage now
    x = torch.randn(2, 6, 1, 8, 8, generator=g)
    out = fam.forward(params, x, archs)
    for b in range(2):
        arch = tuple(archs[b].tolist())
        module = fam.to_module(arch, {k: v[b] for k, v in params.items()})
        k = arch[3]
        assert torch.allclose(module(x[b]), out[b, :, :k], atol=1e-5)
        assert fam.arch_of_module(module) == arch
        assert (out[b, :, k:] == 0).all()
    masks = fam.param_masks(archs, container)
    assert masks["head_weight"][0].sum() == 2 * 3 and masks["conv_weight"][0].sum() == 3 * 9


def test_conv_classifier_rejects_bad_settings():
    with pytest.raises(ValueError, match="pool"):
        ConvClassifierFamily(pool="median")
    with pytest.raises(ValueError, match="does not fit"):
        ConvClassifierFamily(image_size=4, padding=0).output_shape((1, 2, 5, 2))


@pytest.mark.parametrize(
    ("dataset", "classification", "features", "outputs"),
    [("iris", True, 4, 3), ("wine", True, 13, 3), ("breast_cancer", True, 30, 2), ("diabetes", False, 10, 1)],
)
def test_tabular_tasks_on_bundled_data(dataset, classification, features, outputs):
    task = TabularTask(dataset=dataset, n_support=16, n_query=16, feature_fraction=0.5, bootstrap=True)
    assert task.classification is classification
    fam = LinearFamily()
    arch = (features, outputs)
    task.check_compatible(fam, [arch])
    batch = task.sample(fam, arch_tensor([arch] * 5), arch, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (5, 16, features) and batch.support_y.shape == (5, 16, outputs)
    kept = batch.descriptor.sum(1)
    assert torch.all(kept == max(1, round(0.5 * features)))
    assert (batch.support_x * (1 - batch.descriptor).unsqueeze(1) == 0).all(), "hidden features must be zero"
    if classification:
        assert torch.all(batch.support_y.sum(-1) == 1)
    assert task.split_groups(batch.descriptor).shape == (5,)
    with pytest.raises(ConfigError, match=f"'{dataset}' has {features} features"):
        task.check_compatible(fam, [(features + 1, outputs)])


def test_tabular_rejects_unknown_or_downloaded_datasets():
    with pytest.raises(ConfigError, match="task.dataset must be one of"):
        TabularTask(dataset="california_housing")
    assert TabularTask(dataset="iris", feature_fraction=1.0).split_groups(torch.ones(3, 4)) is None


def test_split_by_group_holds_out_whole_digit_pairs(make_cfg):
    cfg = make_cfg("experiment=digits_linear", "zoo.num_targets=400", "zoo.shard_size=200")
    parts = build_parts(cfg)
    dm = ZooDataModule(parts.builder, parts.features, parts.unseen_archs, **cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    groups = {
        name: set(
            parts.task.split_groups(dm.zoo.tensors["descriptor"])[
                torch.isin(dm.zoo.tensors["index"], s["index"])
            ].tolist()
        )
        for name, s in dm.splits.items()
    }
    assert groups["test"] and groups["val"] and groups["train"]
    assert (
        not groups["test"] & groups["train"]
        and not groups["val"] & groups["train"]
        and not groups["test"] & groups["val"]
    )
    pairs = {tuple(sorted(r)) for r in dm.splits["test"]["descriptor"].long().tolist()}
    train_pairs = {tuple(sorted(r)) for r in dm.splits["train"]["descriptor"].long().tolist()}
    assert not pairs & train_pairs


def tiny_checkpoint(root: Path, experiment: str) -> Path:
    """``last.ckpt`` of a tiny real training run of ``experiment`` under ``root``, trained once per
    test session (tests/test_api.py and tests/test_predict_cli.py use the same runs)."""
    folder = root / experiment
    ckpt = folder / "run" / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        train(compose_config([f"experiment={experiment}", "logger=none"], folder))
    return ckpt


@pytest.mark.parametrize("experiment", ["digits_linear", "digits_conv"])
def test_digit_experiments_report_accuracies(tmp_path_factory, experiment):
    run = tiny_checkpoint(tmp_path_factory.getbasetemp(), experiment).parent.parent
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("pred_accuracy", "trained_accuracy", "init_accuracy", "zoo_mean_accuracy"):
        assert 0 <= saved[f"test/{key}"] <= 1, key
    assert saved["test/accuracy_ratio"] == pytest.approx(saved["test/pred_accuracy"] / saved["test/trained_accuracy"])


def test_tabular_experiment_runs(make_cfg):
    metrics = train(
        make_cfg(
            "target=linear",
            "task=tabular",
            "target.archs=[{in_features:13,out_features:3}]",
            "features=[arch,gradient_stats]",
            "loss=functional",
        )
    )
    assert 0 <= metrics["test/pred_accuracy"] <= 1
