"""Random numbers that carry no information about the task: the seed's example-3 input, as a control.

Each zoo target gets a fixed vector (seeded by its index), so a predictor can memorize training
targets through it but cannot generalize: the gap between train and test shows memorization.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import register
from hyperpred.seeding import stable_seed


@register("feature")
class NoiseFeature(Feature):
    name = "noise"

    def __init__(self, size: int = 100, seed: int = 0) -> None:
        self.size = size
        self.seed = seed

    def dim(self) -> int:
        return self.size

    def __call__(self, batch: FeatureBatch) -> Tensor:
        n = batch["archs"].shape[0]
        if "index" not in batch:  # a new task at prediction time: fresh noise
            return torch.rand(n, self.size)
        # a counter-based hash of (index, coordinate): the same vector for a target in any chunk
        offset = stable_seed(self.seed, "noise") % 10_000
        i = batch["index"].to(torch.float64).unsqueeze(1) + offset
        j = torch.arange(self.size, dtype=torch.float64).unsqueeze(0)
        return torch.frac(torch.sin(i * 12.9898 + j * 78.233).abs() * 43758.5453).float()

    def describe(self) -> dict:
        return {"name": self.name, "size": self.size, "seed": self.seed}
