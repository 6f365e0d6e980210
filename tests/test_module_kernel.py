"""The zoo's kernel for ModuleFamily: exact per-target gradients, padding kept at zero, chosen automatically."""

from __future__ import annotations

import torch

from hyperpred.targets import SequentialFamily, arch_tensor
from hyperpred.tasks import DigitsTask, SineTask
from hyperpred.zoo import TrainRecipe, train_targets
from hyperpred.zoo.kernels import ModuleKernel, select_kernel

SIGMOID_MLP = [{"linear": "hidden1"}, "sigmoid", {"linear": "hidden2"}, "sigmoid", {"linear": 1}]
CNN = [
    {"conv2d": "c1", "kernel_size": 3, "padding": 1},
    "relu",
    {"conv2d": "c2", "kernel_size": 3, "padding": 1},
    "relu",
    {"maxpool2d": 2},
    "flatten",
    {"linear": "classes"},
]


def _setup(family, task, archs, seed=0):
    a = arch_tensor(archs)
    container = family.container(archs)
    g = torch.Generator().manual_seed(seed)
    batch = task.sample(family, a, container, g)
    return a, container, family.init(a, container, g), batch


def test_kernel_gradients_equal_each_modules_own_and_padding_gets_none():
    # sigmoid(0) = 0.5: padded hidden units do feed their (zero) outgoing weights, whose raw gradient is not 0
    family, task = SequentialFamily(SIGMOID_MLP, [1]), SineTask(n_support=10, n_query=5)
    archs = [(6, 3), (2, 5), (6, 5)]
    a, container, init, batch = _setup(family, task, archs)
    kernel = ModuleKernel(family, task, a, container, batch.support_x, batch.support_y)
    flat = family.flatten(init)
    out = torch.empty_like(flat)
    kernel.grad(flat, out)
    mask = family.flat_mask(a, container)
    assert torch.all(out[~mask] == 0)
    grads = family.unflatten(out, container)
    for i, arch in enumerate(archs):
        module = family.to_module(arch, {k: v[i] for k, v in init.items()})
        loss = torch.nn.functional.mse_loss(module(batch.support_x[i]), batch.support_y[i])
        for name, p in module.named_parameters():
            (g,) = torch.autograd.grad(loss, p, retain_graph=True)
            got = grads[name][i][tuple(slice(0, s) for s in p.shape)]
            assert (got - g).abs().max().item() <= 1e-6, (arch, name)


def test_training_keeps_padding_zero_and_containers_exact():
    family, task = SequentialFamily(CNN, [1, 8, 8]), DigitsTask(n_support=10, n_query=10)
    archs = [(3, 4, 2), (5, 2, 3), (5, 4, 3)]
    recipe = TrainRecipe(steps=5, lr=0.03)
    assert select_kernel(family, task, recipe, "cpu") is ModuleKernel
    a, container, init, batch = _setup(family, task, archs)
    result = train_targets(family, task, a, container, init, batch.support_x, batch.support_y, recipe)
    assert result.strategy == "module"
    masks = family.param_masks(a, container)
    assert all(torch.all(result.params[k][~masks[k]] == 0) for k in masks)
    init_loss = task.loss(family.forward(init, batch.support_x, a), batch.support_y, family.output_mask(a, container))
    assert torch.all(result.train_loss < init_loss)
    # the trained container still computes each target exactly (padding untouched)
    assert_padded_forward_exact_after_training(family, archs, result.params, batch.support_x)


def assert_padded_forward_exact_after_training(family, archs, params, x):
    y = family.forward(params, x)
    for i, arch in enumerate(archs):
        module = family.to_module(arch, {k: v[i] for k, v in params.items()}).eval()
        with torch.no_grad():
            own = module(x[i])
        assert (y[i][:, : own.shape[1]] - own).abs().max().item() <= 1e-5
