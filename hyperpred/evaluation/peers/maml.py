"""MAML (Finn et al., 2017) as an in-run baseline: one shared init that adapts to a task in a few steps.

Adaptation is vectorized over tasks: the init is broadcast to ``[B, P]``, and the gradient of the
*summed* per-task support loss gives each task's copy its own gradient (tasks do not interact), so
k inner steps on any number of tasks are k batched forward/backward passes. Second order keeps the
inner gradients in the graph (``create_graph=True``); first order detaches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.evaluation.peers.episodes import EpisodeSource
from hyperpred.evaluation.peers.nets import FunctionalNet


@dataclass
class MAMLConfig:
    inner_lr: float = 0.01
    inner_steps: int = 1
    meta_batch: int = 25
    meta_lr: float = 1e-3
    steps: int = 2000
    first_order: bool = False
    seed: int = 0


def adapt(
    net: FunctionalNet,
    params: Tensor,
    x: Tensor,
    y: Tensor,
    lr: float,
    steps: int,
    create_graph: bool = False,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """``steps`` SGD steps of each task's support loss from ``params`` (``[B, P]``), all tasks at once.

    ``on_step(k, params)`` is called after step k (and with k = 0 before the first).
    """
    if on_step is not None:
        on_step(0, params)
    for k in range(1, steps + 1):
        if not params.requires_grad:
            params = params.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(net.loss(params, x, y).sum(), params, create_graph=create_graph)
        params = params - lr * grad
        if not create_graph:
            params = params.detach()
        if on_step is not None:
            on_step(k, params)
    return params


class MAML:
    """Meta-trains ``init`` of ``net`` on an :class:`EpisodeSource`, then adapts it to test tasks."""

    def __init__(self, net: FunctionalNet, cfg: MAMLConfig) -> None:
        self.net, self.cfg = net, cfg
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.init = net.init(self.generator).requires_grad_(True)
        self.train_seconds = 0.0
        self.steps_done = 0

    def meta_loss(self, episode: dict[str, Tensor]) -> Tensor:
        """Mean query loss after the inner steps, over the meta-batch."""
        b = episode["support_x"].shape[0]
        params = self.init.unsqueeze(0).expand(b, -1)
        adapted = adapt(
            self.net,
            params,
            episode["support_x"],
            episode["support_y"],
            self.cfg.inner_lr,
            self.cfg.inner_steps,
            create_graph=not self.cfg.first_order,
        )
        if self.cfg.first_order:  # gradient of the query loss at the adapted params, applied to the init
            adapted = params + (adapted - params).detach()
        return self.net.loss(adapted, episode["query_x"], episode["query_y"]).mean()

    def train(self, source: EpisodeSource) -> None:
        start = time.perf_counter()
        opt = torch.optim.Adam([self.init], lr=self.cfg.meta_lr)
        for _ in range(self.cfg.steps):
            loss = self.meta_loss(source.sample(self.cfg.meta_batch, self.generator))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.steps_done += 1
        self.train_seconds += time.perf_counter() - start

    def evaluate(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor, steps: Sequence[int]
    ) -> dict[int, dict[str, Tensor]]:
        """Per-task query ``loss`` (and ``accuracy``) ``[B]`` after each number of adaptation steps in ``steps``."""
        want, out = set(int(s) for s in steps), {}

        def record(k: int, params: Tensor) -> None:
            if k in want:
                with torch.no_grad():
                    out[k] = {"loss": self.net.loss(params, query_x, query_y)}
                    if self.net.task.classification:
                        out[k]["accuracy"] = self.net.accuracy(params, query_x, query_y)

        params = self.init.detach().unsqueeze(0).expand(support_x.shape[0], -1).clone()
        adapt(self.net, params, support_x, support_y, self.cfg.inner_lr, max(want), on_step=record)
        return out

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> Tensor:
        params = self.init.detach().unsqueeze(0).expand(support_x.shape[0], -1).clone()
        return adapt(self.net, params, support_x, support_y, self.cfg.inner_lr, steps)
