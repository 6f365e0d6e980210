"""Which process of a distributed job this is: only rank 0 writes files and prints."""

from __future__ import annotations

from pytorch_lightning.utilities import rank_zero_only


def is_global_zero() -> bool:
    """Rank 0 of a distributed job (Lightning reads RANK/LOCAL_RANK/SLURM_PROCID at import)."""
    return rank_zero_only.rank == 0
