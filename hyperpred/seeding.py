"""Seeds and shared initializations that must be identical across processes, runs and machines.

The zoo trains every target of an architecture from one shared init, and the conditioning
features run a fixed probe network from the same kind of init: both come from here, so features
(and the API) need not import the zoo.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from hyperpred.targets.base import TargetFamily


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts, identical across processes and platforms."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shared_init(family: TargetFamily, archs: Tensor, container: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """One fixed init per distinct architecture (seeded by the architecture), gathered per target."""
    unique, inverse = torch.unique(archs, dim=0, return_inverse=True)
    per_arch = [
        family.init(
            u.unsqueeze(0), container, torch.Generator().manual_seed(stable_seed(seed, "init", tuple(u.tolist())))
        )
        for u in unique
    ]
    return {k: torch.cat([p[k] for p in per_arch])[inverse] for k in per_arch[0]}
