"""Fine-tuning curves (the GHN-3 / WeightCLIP protocol): query loss after k Adam steps on the support set.

All tasks fine-tune at once: one ``[B, P]`` leaf, the summed per-task support loss, and Adam,
which is elementwise, so every task's row follows its own Adam trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hyperpred.evaluation.peers.nets import FunctionalNet


def finetune_curve(
    net: FunctionalNet,
    start: Tensor,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    steps: Sequence[int],
    lr: float,
) -> dict[int, dict[str, Tensor]]:
    """``{k: {"loss": [B], "accuracy": [B] (classification)}}`` after k full-batch Adam steps from ``start``."""
    want, out = sorted(set(int(s) for s in steps)), {}
    params = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)

    def record(k: int) -> None:
        with torch.no_grad():
            out[k] = {"loss": net.loss(params, query_x, query_y)}
            if net.task.classification:
                out[k]["accuracy"] = net.accuracy(params, query_x, query_y)

    for k in range(max(want) + 1):
        if k in want:
            record(k)
        if k == max(want):
            break
        loss = net.loss(params, support_x, support_y).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return out
