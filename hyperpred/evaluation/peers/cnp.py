"""A deterministic conditional neural process (Garnelo et al., 2018): predicts the function, not weights.

Encoder MLP over each support pair (x, y) → mean over the set → decoder MLP on (r, x_query) → the
mean and scale of a Gaussian over y; trained by the Gaussian negative log-likelihood of the query
targets on meta-batches of tasks. Its query loss is the MSE of the predicted mean (classification:
the decoder emits logits and trains on cross-entropy).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hyperpred.evaluation.peers.episodes import EpisodeSource
from hyperpred.tasks.base import Task


def mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(i, o))
        if k < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CNP(nn.Module):
    """``forward(support_x, support_y, query_x)`` → ``(mean, scale)`` of ``[B, n_query, out]``."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 128, depth: int = 3, classification: bool = False):
        super().__init__()
        self.classification = classification
        self.encoder = mlp([in_dim + out_dim] + [width] * depth)
        self.decoder = mlp([width + in_dim] + [width] * (depth - 1) + [out_dim if classification else 2 * out_dim])

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor | None]:
        sx, qx = support_x.flatten(2), query_x.flatten(2)
        r = self.encoder(torch.cat([sx, support_y.flatten(2)], -1)).mean(1, keepdim=True)
        out = self.decoder(torch.cat([r.expand(-1, qx.shape[1], -1), qx], -1))
        if self.classification:
            return out, None
        mean, raw = out.chunk(2, dim=-1)
        return mean, 0.1 + 0.9 * F.softplus(raw)

    def flops_per_query(self, n_support: int) -> float:
        """2 × multiply-adds per query point: the decoder, plus the encoder's pass over the support set shared by
        that task's query points (counted once per task, here per query of a 100-point query set)."""
        enc = sum(2 * m.in_features * m.out_features for m in self.encoder if isinstance(m, nn.Linear))
        dec = sum(2 * m.in_features * m.out_features for m in self.decoder if isinstance(m, nn.Linear))
        return dec + enc * n_support / 100


def cnp_loss(model: CNP, task: Task, episode: dict[str, Tensor]) -> Tensor:
    mean, scale = model(episode["support_x"], episode["support_y"], episode["query_x"])
    if scale is None:
        return task.loss(mean, episode["query_y"]).mean()
    return -torch.distributions.Normal(mean, scale).log_prob(episode["query_y"].flatten(2)).mean()


def train_cnp(
    model: CNP, task: Task, source: EpisodeSource, steps: int, meta_batch: int, lr: float, seed: int
) -> float:
    """Adam on the likelihood of query targets; returns the wall time in seconds."""
    start, generator = time.perf_counter(), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = cnp_loss(model, task, source.sample(meta_batch, generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def cnp_query_loss(model: CNP, task: Task, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
    """Per-task query loss ``[B]`` of the predicted mean (and accuracy for classification)."""
    mean, _ = model(batch["support_x"].float(), batch["support_y"].float(), batch["query_x"].float())
    y = batch["query_y"].flatten(2).to(mean.dtype)
    acc = task.accuracy(mean, y) if task.classification else None
    return task.loss(mean, y), acc
