"""The closed-form kernel for Linear/activation chains: exact against autograd, chosen only where it applies."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from hyperpred.targets import ModuleFamily, SequentialFamily, arch_tensor
from hyperpred.tasks import DigitsTask, SineTask, TeacherTask
from hyperpred.zoo import TrainRecipe, train_targets
from hyperpred.zoo.kernels import ChainKernel, ModuleKernel, select_kernel

ACTS = ["relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "silu", "softplus"]


def mlp(act: str, depth: int) -> list:
    layers: list = []
    for i in range(depth):
        layers += [{"linear": f"hidden{i + 1}"}, act]
    return [*layers, {"linear": 1}]


def setup(family, task, archs, seed=0):
    table, container = arch_tensor(archs), family.container(archs)
    g = torch.Generator().manual_seed(seed)
    batch = task.sample(family, table, container, g)
    return table, container, family.init(table, container, g), batch


def grads(kernel_cls, family, task, table, container, init, batch):
    kernel = kernel_cls(family, task, table, container, batch.support_x, batch.support_y)
    flat = family.flatten(init)
    out = torch.full_like(flat, float("nan"))  # every entry must be written
    kernel.grad(flat, out)
    return out


def assert_close_rel(a: torch.Tensor, b: torch.Tensor, rel: float, what: str) -> None:
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
    assert err <= rel, f"{what}: relative difference {err:.2e} > {rel:.0e}"


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradients_equal_autograd_and_padding_gets_none(act, depth):
    family, task = SequentialFamily(mlp(act, depth), [1]), SineTask(n_support=12, n_query=4)
    widths = [(6, 3, 4), (2, 5, 4), (6, 5, 1)]
    archs = [w[:depth] for w in widths]
    table, container, init, batch = setup(family, task, archs)
    assert select_kernel(family, task, TrainRecipe(), "cpu", container=container) is ChainKernel
    ours = grads(ChainKernel, family, task, table, container, init, batch)
    ref = grads(ModuleKernel, family, task, table, container, init, batch)
    assert torch.all(ours[~family.flat_mask(table, container)] == 0)  # sigmoid/softplus feed padded weights: masked
    assert_close_rel(ours, ref, 1e-6, f"{act} depth {depth}")


def test_stacked_activations_and_an_activation_on_the_output():
    layers = [{"linear": "h1"}, "relu", "sigmoid", {"linear": "h2"}, {"linear": 1}, "tanh"]
    family, task = SequentialFamily(layers, [2]), TeacherTask(n_support=9, n_query=3)
    table, container, init, batch = setup(family, task, [(5, 3), (3, 4)])
    ours = grads(ChainKernel, family, task, table, container, init, batch)
    assert_close_rel(ours, grads(ModuleKernel, family, task, table, container, init, batch), 1e-6, "stacked")


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_training_equals_the_module_kernel_and_the_seed_loop(act):
    family, task = SequentialFamily(mlp(act, 2), [1]), SineTask(n_support=20, n_query=4)
    archs = [(8, 8), (3, 8), (8, 2), (5, 6)]
    table, container, init, batch = setup(family, task, archs)
    recipe = TrainRecipe(steps=30, lr=0.01)
    support = (batch.support_x, batch.support_y)
    ours = train_targets(family, task, table, container, init, *support, recipe)
    ref = train_targets(family, task, table, container, init, *support, recipe, strategy="module")
    assert ours.strategy == "chain" and ref.strategy == "module"
    for k in ref.params:
        assert_close_rel(ours.params[k], ref.params[k], 1e-5, k)
    assert_close_rel(ours.train_loss, ref.train_loss, 1e-5, "final loss")
    masks = family.param_masks(table, container)
    assert all(torch.all(ours.params[k][~masks[k]] == 0) for k in masks)
    for i, arch in enumerate(archs):  # the seed's way: one nn.Module and one torch.optim.Adam per target
        module = family.to_module(arch, {k: v[i] for k, v in init.items()})
        opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
        for _ in range(recipe.steps):
            opt.zero_grad()
            nn.functional.mse_loss(module(batch.support_x[i]), batch.support_y[i]).backward()
            opt.step()
        for name, p in family.pad(family.from_module(module)[1], container).items():
            torch.testing.assert_close(ours.params[name][i], p, rtol=1e-4, atol=1e-5, msg=f"target {i} {name}")


@pytest.mark.parametrize("batch_size", [None, 5])
def test_classifier_with_padded_classes_and_minibatches(batch_size):
    # 64-H-K digits classifier, K varying inside one zoo: cross-entropy over the real classes only
    layers = [{"linear": "hidden"}, "relu", {"linear": "classes"}]
    family, task = SequentialFamily(layers, [64]), DigitsTask(n_support=15, n_query=5)
    table, container, init, batch = setup(family, task, [(6, 2), (4, 3), (6, 3)])
    recipe = TrainRecipe(steps=20, lr=0.01, batch_size=batch_size)
    support = (batch.support_x, batch.support_y)
    runs = [
        train_targets(
            family, task, table, container, init, *support, recipe, torch.Generator().manual_seed(2), strategy=s
        )
        for s in ("auto", "module")
    ]
    assert runs[0].strategy == "chain"
    for k in runs[1].params:
        assert_close_rel(runs[0].params[k], runs[1].params[k], 1e-5, k)
    masks = family.param_masks(table, container)
    assert all(torch.all(runs[0].params[k][~masks[k]] == 0) for k in masks)


def bias_free(width: int) -> nn.Sequential:
    """A chain defined outside hyperpred, through ModuleFamily: no bias on the first layer, nested Sequential."""
    return nn.Sequential(
        nn.Linear(3, width, bias=False), nn.Sequential(nn.Tanh(), nn.Dropout(0.5)), nn.Linear(width, 2)
    )


def shared(width: int) -> nn.Sequential:
    """One Linear applied twice: ``named_children`` lists it once, so it must not pass for a 2-layer chain."""
    square = nn.Linear(width, width)
    return nn.Sequential(nn.Linear(3, width), square, nn.ReLU(), square, nn.Linear(width, 3))


class NotAChain(nn.Module):
    """Linear layers and activations, but its own forward (a skip connection): the order is not the module list."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x))) + x


def test_module_family_chain_without_bias_is_exact():
    family = ModuleFamily(bias_free, ["width"], [3])
    task = TeacherTask(n_support=8, n_query=2)
    table, container, init, batch = setup(family, task, [(4,), (2,)])
    assert select_kernel(family, task, TrainRecipe(), "cpu", container=container) is ChainKernel
    ours = grads(ChainKernel, family, task, table, container, init, batch)
    assert_close_rel(ours, grads(ModuleKernel, family, task, table, container, init, batch), 1e-6, "bias-free")


@pytest.mark.parametrize(
    "family",
    [
        ModuleFamily(NotAChain, ["width"], [3]),
        ModuleFamily(shared, ["width"], [3]),
        SequentialFamily([{"linear": "h"}, "layernorm", "relu", {"linear": 1}], [1]),
        SequentialFamily([{"conv2d": "c", "kernel_size": 3}, "relu", "flatten", {"linear": 2}], [1, 4, 4]),
    ],
    ids=["own-forward", "shared-layer", "layernorm", "conv"],
)
def test_anything_else_falls_back_to_the_module_kernel(family):
    container = family.container([(3,)])
    assert select_kernel(family, SineTask(), TrainRecipe(), "cpu", container=container) is ModuleKernel
    assert select_kernel(family, SineTask(), TrainRecipe(), "cpu") is ModuleKernel


def test_module_init_is_the_same_in_concurrent_threads():
    # the zoo builder trains one shard per thread; each target's init seeds the global RNG, which
    # another thread building a module at the same time must not consume (it did: the mlp2 bench
    # rows of one zoo had other inits per build)
    family = SequentialFamily(mlp("relu", 2), [1])
    table = arch_tensor([(16, 16)] * 48)

    def init(seed: int) -> torch.Tensor:
        return family.flatten(family.init(table, (16, 16), torch.Generator().manual_seed(seed)))

    alone = [init(s) for s in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(init, range(4)))
    assert all(torch.equal(a, b) for a, b in zip(alone, together))
