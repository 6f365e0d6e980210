"""Memorization audit: does a prediction sit on a training target rather than on its own task's answer?

Distances are in function space: the mean squared difference of two networks' outputs on the test
task's query inputs (class probabilities for classification), so weight-space symmetries do not
matter. Per prediction p with its nearest training target t* and the test task's own trained target o:

- ``closer_to_train``: d(p, t*) < d(p, o), the prediction is nearer a training target than its own answer;
- ``memorized`` (the issue's wording): d(p, t*) < d(t*, o), the prediction lies closer to a training
  target than that target lies to the task's own trained target.

Both shares are 1 when predictions copy training targets and 0 when they equal the own targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.evaluation.peers.outputs import outputs_on, test_chunks
from hyperpred.targets.base import TargetFamily


def _fn(out: Tensor, classification: bool) -> Tensor:
    return torch.softmax(out, -1) if classification else out


def function_distances(
    family: TargetFamily,
    container: Sequence[int],
    pred: Tensor,
    own: Tensor,
    archs: Tensor,
    train_flat: Tensor,
    train_archs: Tensor,
    x: Tensor,
    classification: bool = False,
    chunk: int | None = None,
) -> dict[str, Tensor]:
    """Per test task ``[T]``: d(p, t*), d(p, o), d(t*, o) and the index of t*."""
    n_train, (n_test, n) = train_flat.shape[0], x.shape[:2]
    keys = ("pred_to_train", "pred_to_own", "train_to_own")
    res = {k: torch.empty(n_test) for k in keys}
    res["nearest"] = torch.empty(n_test, dtype=torch.long)
    p_all = family.unflatten(pred, container)
    o_all = family.unflatten(own, container)
    with torch.no_grad():
        fp = _fn(family.forward(p_all, x, archs), classification).flatten(2)  # [T, n*out...]
        fo = _fn(family.forward(o_all, x, archs), classification).flatten(2)
        for s in test_chunks(n_train, n_test, n, chunk):
            ft = _fn(outputs_on(family, container, train_flat, train_archs, x[s]), classification).flatten(3)
            d = (ft - fp[s].unsqueeze(0)).square().flatten(2).mean(2)  # [N, t]
            dmin, idx = d.min(0)
            nearest_out = ft[idx, torch.arange(idx.numel())]  # [t, n, out]
            res["pred_to_train"][s] = dmin
            res["nearest"][s] = idx
            res["train_to_own"][s] = (nearest_out - fo[s]).square().flatten(1).mean(1)
        res["pred_to_own"] = (fp - fo).square().flatten(1).mean(1)
    return res


def memorization_summary(d: dict[str, Tensor]) -> dict[str, float]:
    eps = 1e-12
    return {
        "memorization_share": (d["pred_to_train"] < d["train_to_own"]).float().mean().item(),
        "closer_to_train_share": (d["pred_to_train"] < d["pred_to_own"]).float().mean().item(),
        "memorization_distance_ratio": (d["pred_to_train"] / d["pred_to_own"].clamp_min(eps)).median().item(),
        "pred_to_train_distance": d["pred_to_train"].median().item(),
        "pred_to_own_distance": d["pred_to_own"].median().item(),
        "train_to_own_distance": d["train_to_own"].median().item(),
    }
