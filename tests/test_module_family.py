"""ModuleFamily: any nn.Module as a padded, batched target family, exact against the module itself."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from hyperpred.factory import build_parts
from hyperpred.registry import register
from hyperpred.targets import ModuleFamily, arch_tensor
from hyperpred.train import train


@register("module")
class DeepMLP(nn.Module):
    """1 → width1 → ... → width{depth} → 1 with tanh (a non-zero-preserving activation would also do)."""

    def __init__(self, depth: int = 1, width1: int = 1, width2: int = 1, width3: int = 1, act: str = "Tanh") -> None:
        super().__init__()
        self.depth, self.width1, self.width2, self.width3 = depth, width1, width2, width3
        widths = [1, width1, width2, width3][: depth + 1] + [1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(getattr(nn, act)())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Conv(1→c1)-ReLU-MaxPool-Conv(c1→c2)-ReLU-Flatten-Linear(c2·16 → classes) on 8×8 images."""

    def __init__(self, c1: int, c2: int, classes: int) -> None:
        super().__init__()
        self.c1, self.c2, self.classes = c1, c2, classes
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.head = nn.Linear(c2 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv1(x)))
        return self.head(torch.relu(self.conv2(h)).flatten(1))


class NormNet(nn.Module):
    """Linear(1→hidden)-BatchNorm-ReLU-Linear(hidden→width)-LayerNorm(width)-GELU-Linear(width→1)."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.hidden, self.width = hidden, width
        self.inp, self.bn = nn.Linear(1, hidden), nn.BatchNorm1d(hidden)
        self.mid, self.ln, self.out = nn.Linear(hidden, width), nn.LayerNorm(width), nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.inp(x)))
        return self.out(nn.functional.gelu(self.ln(self.mid(h))))


class BNConv(nn.Module):
    """Conv(1→c)-BatchNorm2d-ReLU-global mean-Linear(c→2)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.conv, self.bn, self.head = nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.Linear(c, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((-2, -1)))


def assert_padded_forward_exact(family: ModuleFamily, archs: list[tuple[int, ...]], n: int = 7) -> None:
    """Batched padded forward of mixed archs == each target's own nn.Module forward (<= 1e-6)."""
    container = family.container(archs)
    a = arch_tensor(archs)
    params = family.init(a, container, torch.Generator().manual_seed(0))
    masks = family.param_masks(a, container)
    for k in params:  # padding is exactly zero, real entries are not all zero
        assert torch.all(params[k][~masks[k]] == 0)
    x = torch.randn(len(archs), n, *family.input_shape(container), generator=torch.Generator().manual_seed(1))
    y = family.forward(params, x, a)
    assert y.shape == (len(archs), n, *family.output_shape(container))
    for i, arch in enumerate(archs):
        module = family.to_module(arch, {k: v[i] for k, v in params.items()}).eval()
        with torch.no_grad():
            own = module(x[i])
        got = y[i][(slice(None), *(slice(0, s) for s in own.shape[1:]))]
        assert (got - own).abs().max().item() <= 1e-6, (arch, (got - own).abs().max().item())
        # round trip through the module's real state_dict
        back_arch, back = family.from_module(module)
        assert back_arch == tuple(arch)
        for k, v in back.items():
            assert torch.equal(v, params[k][i][tuple(slice(0, s) for s in v.shape)])


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mlp_of_any_depth_padded_forward_equals_own_module(depth):
    fields = [f"width{i + 1}" for i in range(depth)]
    family = ModuleFamily(functools.partial(DeepMLP, depth=depth), fields, [1])
    archs = [tuple((3 + 5 * i + j) % 11 + 2 for j in range(depth)) for i in range(5)]
    assert_padded_forward_exact(family, archs)


def test_cnn_classifier_with_pooling_and_flatten():
    family = ModuleFamily(SmallCNN, ["c1", "c2", "classes"], [1, 8, 8])
    assert_padded_forward_exact(family, [(2, 3, 2), (5, 4, 3), (3, 6, 5), (5, 6, 5)])
    out_mask = family.output_mask(arch_tensor([(2, 3, 2), (5, 6, 5)]), (5, 6, 5))
    assert out_mask.tolist() == [[True, True, False, False, False], [True] * 5]


def test_layernorm_and_batchnorm_with_fixed_normalized_width():
    family = ModuleFamily(NormNet, ["hidden", "width"], [1], fixed_fields=["width"])
    archs = [(3, 6), (9, 6), (5, 6)]
    assert_padded_forward_exact(family, archs)


def test_batchnorm_over_padded_channels():
    family = ModuleFamily(BNConv, ["c"], [1, 6, 6])
    assert_padded_forward_exact(family, [(2,), (7,), (4,)])


def test_layernorm_over_a_varying_width_is_refused_naming_the_layer():
    family = ModuleFamily(NormNet, ["hidden", "width"], [1])
    with pytest.raises(ValueError, match="layer 'ln' .*LayerNorm.*fixed_fields"):
        family.container([(3, 4), (3, 6)])


def test_fixed_field_that_varies_is_refused_naming_it():
    family = ModuleFamily(NormNet, ["hidden", "width"], [1], fixed_fields=["width"])
    with pytest.raises(ValueError, match="'width' must be the same"):
        family.container([(3, 4), (3, 6)])


def test_init_is_the_modules_own_and_reproducible():
    family = ModuleFamily(SmallCNN, ["c1", "c2", "classes"], [1, 8, 8])
    a = arch_tensor([(2, 3, 2), (4, 4, 3)])
    p1 = family.init(a, (4, 4, 3), torch.Generator().manual_seed(5))
    p2 = family.init(a, (4, 4, 3), torch.Generator().manual_seed(5))
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    # PyTorch's default Conv2d init: |w| <= 1/sqrt(fan_in) with fan_in = c_in * 3 * 3 of the target's own size
    assert p1["conv2.weight"][0, :3, :2].abs().max() <= (2 * 9) ** -0.5
    assert p1["conv2.weight"][0, :3, :2].abs().max() > 0.5 * (2 * 9) ** -0.5


def test_module_defined_in_a_test_file_works_through_config_alone(make_cfg):
    cfg = make_cfg(
        "target=module",
        f"target.family.module._target_={DeepMLP.__module__}.DeepMLP",
        "+target.family.module.depth=2",
        "target.family.arch_fields=[width1,width2]",
        "target.family.input_shape=[1]",
        "target.archs=[{width1:4,width2:6},{width1:8,width2:3}]",
        "target.unseen_archs=[{width1:12,width2:12}]",
        "task=sine",
        "predictor=mlp",
        "features=[arch,activation_stats,gradient_stats]",
    )
    parts = build_parts(cfg)
    assert isinstance(parts.family, ModuleFamily) and parts.container == (12, 12)
    assert_padded_forward_exact(parts.family, parts.archs + parts.unseen_archs)
    metrics = train(cfg)
    for split in ("test", "test_unseen_arch"):
        assert 0 < metrics[f"{split}/pred_query_loss"] < float("inf"), metrics


def test_activations_are_per_layer_with_positions_pooled():
    # SmallCNN calls torch.relu, not nn.ReLU: the layers read are then its parameterized layers but the last
    family = ModuleFamily(SmallCNN, ["c1", "c2", "classes"], [1, 8, 8])
    archs = [(2, 3, 2), (4, 5, 3)]
    a, container = arch_tensor(archs), family.container(archs)
    params = family.init(a, container, torch.Generator().manual_seed(0))
    x = torch.randn(2, 6, 1, 8, 8)
    acts = family.activations(params, x, a)
    assert [t.shape for t in acts] == [(2, 6, 4), (2, 6, 5), (2, 6, 3)]
    conv1 = family.to_module(archs[0], {k: v[0] for k, v in params.items()}).conv1
    torch.testing.assert_close(acts[0][0, :, :2], conv1(x[0]).mean((-2, -1)), rtol=1e-5, atol=1e-6)
    # nn.ReLU layers are what a Sequential network reports: one per hidden layer, then the output
    mlp = ModuleFamily(functools.partial(DeepMLP, depth=3, act="ReLU"), ["width1", "width2", "width3"], [1])
    p = mlp.init(arch_tensor([(3, 4, 5)]), (3, 4, 5), torch.Generator().manual_seed(0))
    assert [t.shape[-1] for t in mlp.activations(p, torch.randn(1, 7, 1))] == [3, 4, 5, 1]
