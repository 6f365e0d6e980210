"""Reproduce, with numbers, why the seed's three examples crash and why their labels are unlearnable.

Each check rebuilds the smallest piece of the seed's code that shows one defect and measures it.
Run: ``python scripts/seed_defects.py`` (CPU, about a minute). The fixed experiments are
``python scripts/train.py experiment=seed_ex1|seed_ex2|seed_ex3``.
"""

from __future__ import annotations

import math
import warnings

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from hyperpred.targets import MLPFamily, arch_tensor
from hyperpred.tasks import TeacherTask
from hyperpred.zoo import TrainRecipe, train_targets


def inner_training_under_no_grad() -> str:
    """All three examples train the target inside ``torch.no_grad()``."""
    model = nn.Linear(1, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.rand(8, 1)
    try:
        with torch.no_grad():
            loss = nn.functional.mse_loss(model(x), torch.zeros(8, 4))
            loss.backward()
            opt.step()
    except RuntimeError as e:
        return f"crash: {str(e).splitlines()[0]}"
    return "no crash"


def ex1_scalar_output() -> str:
    """Example 1 predicts 1 number for 3H+1 weights: MSE broadcasts, the optimum is the mean weight."""
    hidden = 8
    label = torch.cat([p.flatten() for p in nn.Sequential(nn.Linear(1, hidden), nn.Linear(hidden, 1)).parameters()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.functional.mse_loss(torch.zeros(1), label)
        best = nn.functional.mse_loss(label.mean().expand(1), label).item()
    return (
        f"label has {label.numel()} values, prediction 1; broadcast warning: {bool(caught)}; best possible loss "
        f"{best:.3f} = label variance {label.var(unbiased=False).item():.3f}"
    )


def ex2_first_layer_size() -> str:
    """Example 2's first layer expects 1+3+32+9 = 45 features and gets 3; the output leaves out biases."""
    fc1 = nn.Linear(1 + 3 + 32 + 3 * 3, 128)
    try:
        fc1(torch.tensor([[3.0, 32.0, 3.0]]))
        shape = "ok"
    except RuntimeError as e:
        shape = f"crash: {str(e).splitlines()[0]}"
    conv = nn.Conv2d(3, 32, 3)
    return f"{shape}; output 3*32*3*3 = {3 * 32 * 9} values, label has {sum(p.numel() for p in conv.parameters())}"


def ex3_defects() -> str:
    """Example 3: 50 outputs for 55 weights, one target column for 5 outputs, std over 1 sample."""
    layer = nn.Linear(10, 5)
    n_label = sum(p.numel() for p in layer.parameters())
    out = layer(torch.randn(32, 10))
    target = torch.sin(torch.randn(32, 10).sum(1, keepdim=True))
    same = torch.broadcast_shapes(out.shape, target.shape) == out.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std_one = torch.std(layer(torch.randn(1, 10)), dim=0)
    return (
        f"predictor outputs 50, label has {n_label}; target {tuple(target.shape)} broadcast to {tuple(out.shape)}: "
        f"{same}; test std over 1 sample: {std_one[0].item()}"
    )


def sinsum_linear_fit(d: int = 10, n: int = 200_000) -> str:
    """With x ~ N(0, I_10), sin(Σx) has almost no linear part: R² of the best linear fit."""
    g = torch.Generator().manual_seed(0)

    def r2(std: float) -> float:
        x = std * torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.sin(x.sum(1, keepdim=True))
        xb = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
        w = torch.linalg.lstsq(xb, y).solution
        return 1 - (xb @ w - y).var().item() / y.var().item()

    return (
        f"R² of the best linear fit: {r2(1.0):.5f} with x~N(0,1) (the seed), {r2(1 / math.sqrt(d)):.3f} with "
        "x~N(0,1/d) (task=sinsum)"
    )


def teacher_labels_are_noise(n: int = 512, hidden: int = 8) -> str:
    """Labels of random-teacher tasks: given only H, the best prediction is the mean, whose error
    is the label variance. Shows how little of it 100 Adam steps explain."""
    family, task = MLPFamily(), TeacherTask(n_support=100, n_query=100)
    table = arch_tensor([(hidden,)] * n)
    g = torch.Generator().manual_seed(0)
    batch = task.sample(family, table, (hidden,), g)
    init = family.init(table, (hidden,), g)
    trained = train_targets(
        family, task, table, (hidden,), init, batch.support_x, batch.support_y, TrainRecipe(steps=100, lr=0.01)
    )
    flat = family.flatten(trained.params)
    mean_mse = (flat - flat.mean(0)).square().mean().item()
    moved = (flat - family.flatten(init)).square().mean().item()
    return (
        f"H={hidden}: mean-weight MSE (best width-only prediction) {mean_mse:.3f}; weights moved only {moved:.4f} "
        "(MSE) from their random init in 100 steps"
    )


CHECKS = {
    "all: inner training under no_grad": inner_training_under_no_grad,
    "ex1: one scalar for 3H+1 weights": ex1_scalar_output,
    "ex2: first layer / output size": ex2_first_layer_size,
    "ex3: sizes, broadcast target, NaN": ex3_defects,
    "ex3: sin(Σx) vs a linear target": sinsum_linear_fit,
    "ex1/2: random-teacher labels": teacher_labels_are_noise,
}


def main() -> None:
    torch.manual_seed(0)
    table = Table(title="The seed's examples as written: measured defects", show_lines=True)
    table.add_column("check")
    table.add_column("measured")
    for name, check in CHECKS.items():
        table.add_row(name, check())
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
