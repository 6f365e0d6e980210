"""How a run is put together and what it leaves behind: checkpoints (read safely), provenance, metrics."""
