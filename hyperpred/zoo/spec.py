"""What defines a zoo, and the content address (key) derived from it.

Only the data-relevant choices enter the key: the target family and its architectures, the task
distribution, the init scheme, the training recipe, the seed and the size. Changing the
predictor, the logger or the trainer never invalidates a zoo.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from hyperpred.config_schema import check_value

#: Bump when the on-disk layout, the meaning of a stored tensor, or any kernel's float32 arithmetic
#: changes (a zoo built before would differ in its last bits from a fresh one under the same key).
#: 3: the MLP kernel performs autograd's own operations (bit-identical to a per-target loop).
#: 4: its first layer is one fused multiply-add (addcmul), as the BLAS's k=1 GEMM on AVX2/AVX-512.
#: 5: ModuleFamily/target=sequential chains of Linear layers train with the closed-form ``chain`` kernel.
FORMAT_VERSION = 5


@dataclass(frozen=True)
class TrainRecipe:
    """How each target is trained: Adam on the support set of its task."""

    steps: int = 100
    lr: float = 0.01
    batch_size: int | None = None  # None = full batch over the support set

    def __post_init__(self) -> None:
        check_value("zoo.steps", self.steps)
        check_value("zoo.lr", self.lr)
        check_value("zoo.batch_size", self.batch_size)


@dataclass(frozen=True)
class ZooSpec:
    """Everything that determines a zoo's bytes."""

    family: dict[str, Any]
    task: dict[str, Any]
    archs: tuple[tuple[int, ...], ...]
    container: tuple[int, ...]
    num_targets: int
    shard_size: int
    seed: int
    init: str
    recipe: TrainRecipe = field(default_factory=TrainRecipe)

    def __post_init__(self) -> None:
        for key in ("num_targets", "shard_size", "init"):
            check_value(f"zoo.{key}", getattr(self, key))
        check_value("target.archs", self.archs)

    @property
    def num_shards(self) -> int:
        return -(-self.num_targets // self.shard_size)

    def shard_bounds(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(start + self.shard_size, self.num_targets)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["archs"] = [list(a) for a in self.archs]
        d["container"] = list(self.container)
        d["format_version"] = FORMAT_VERSION
        return d

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict` (sorted keys, no whitespace)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def dirname(self) -> str:
        return f"{self.family['name']}-{self.task['name']}-{self.key[:16]}"
