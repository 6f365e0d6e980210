"""Train a whole shard of targets at once: chunks of stacked parameters, one batched Adam each.

A shard is cut into chunks whose working memory fits a fixed budget; every chunk trains all its
targets together (a kernel computes all their gradients in a few batched ops, :class:`BatchedAdam`
updates them in place). There is no Python loop over targets or samples, only over chunks and
steps. Results are a pure function of the inputs: the chunk size comes from a constant budget,
not from the machine, and mini-batches are drawn per step for the whole shard, so they do not
depend on where chunk boundaries fall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperpred.seeding import stable_seed
from hyperpred.targets.base import Params, TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.adam import BatchedAdam
from hyperpred.zoo.kernels import Kernel, select_kernel
from hyperpred.zoo.spec import TrainRecipe

#: Cap on any kernel's chunk budget (``Kernel.chunk_bytes``); tests lower it to force tiny chunks.
CHUNK_BYTES = 64 * 2**20
#: Chunk budget on accelerators: no cache to stay in, and every kernel launch costs, so chunks are big.
ACCELERATOR_CHUNK_BYTES = 1 * 2**30


@dataclass
class TrainResult:
    params: Params  # trained, padded, [B, *shape]
    train_loss: Tensor  # [B] final support loss
    steps: int
    strategy: str = ""  # name of the kernel that computed the gradients


def per_target_loss(
    family: TargetFamily, task: Task, params: Params, archs: Tensor, container: Sequence[int], x: Tensor, y: Tensor
) -> Tensor:
    """Task loss of each target on its own data: ``[B]``."""
    return task.loss(family.forward(params, x, archs), y, family.output_mask(archs, container))


def chunk_size(
    kernel: type[Kernel],
    family: TargetFamily,
    container: Sequence[int],
    n: int,
    total: int,
    device: torch.device | None = None,
) -> int:
    """How many targets train together: as many as fit the kernel's budget, at least one.

    The budget is a constant per device type, not the machine's free memory or cache size: chunk
    boundaries must not depend on which CPU builds a zoo, or two builds could differ in their
    last bits.
    """
    on_cpu = device is None or torch.device(device).type == "cpu"
    budget = min(kernel.chunk_bytes, CHUNK_BYTES) if on_cpu else ACCELERATOR_CHUNK_BYTES
    return max(1, min(total, budget // max(1, kernel.bytes_per_target(family, container, n))))


def minibatch_rows(base_seed: int, step: int, targets: int, n: int, batch_size: int) -> Tensor:
    """The mini-batch of ``step`` for every target of a shard ``[targets, batch_size]`` (with replacement)."""
    g = torch.Generator().manual_seed(stable_seed(base_seed, "batch", step))
    return torch.randint(n, (targets, batch_size), generator=g)


def train_targets(
    family: TargetFamily,
    task: Task,
    archs: Tensor,
    container: Sequence[int],
    init: Params,
    x: Tensor,
    y: Tensor,
    recipe: TrainRecipe,
    generator: torch.Generator | None = None,
    *,
    strategy: str = "auto",
    device: torch.device | str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Run ``recipe.steps`` Adam steps on every target's own ``(x, y)``, all targets at once.

    ``strategy`` names a kernel (see :mod:`hyperpred.zoo.kernels`) or ``"auto"``; ``device`` is
    where chunks train (results come back to the CPU); ``on_progress(k)`` is told after each
    chunk that ``k`` more targets are done.
    """
    dev = torch.device(device) if device is not None else x.device
    kernel_cls = select_kernel(family, task, recipe, dev, strategy, container)
    with torch.no_grad():
        flat = family.flatten(init) * family.flat_mask(archs, container).to(x.dtype)  # padding exactly 0
        total, n = flat.shape[0], x.shape[1]
        batch = recipe.batch_size if recipe.batch_size is not None and recipe.batch_size < n else None
        base_seed = int(torch.randint(2**62, (1,), generator=generator)) if batch is not None else 0
        size = chunk_size(kernel_cls, family, container, batch or n, total, dev)
        trained = torch.empty_like(flat)
        train_loss = torch.empty(total, dtype=x.dtype)
        for start in range(0, total, size):
            stop = min(total, start + size)
            params = flat[start:stop].to(dev, copy=True)
            kernel = kernel_cls(
                family, task, archs[start:stop].to(dev), container, x[start:stop].to(dev), y[start:stop].to(dev), batch
            )
            adam, grad = BatchedAdam(params, recipe.lr), torch.empty_like(params)
            for step in range(recipe.steps):
                rows = None if batch is None else minibatch_rows(base_seed, step, total, n, batch)[start:stop].to(dev)
                kernel.grad(params, grad, rows)
                adam.step(grad)
            train_loss[start:stop] = kernel.loss(params).cpu()
            trained[start:stop] = params.cpu()
            del kernel, adam, grad, params
            if on_progress is not None:
                on_progress(stop - start)
    return TrainResult(family.unflatten(trained, container), train_loss, recipe.steps, kernel_cls.name)
