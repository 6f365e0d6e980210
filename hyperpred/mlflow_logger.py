"""Lightning's MLflow logger, taking hyperpred's list of ``tags`` (``conf/logger/mlflow.yaml``).

MLflow tags are key/value pairs; each of the run's tags becomes one, with the value ``"true"``, so
``tags.sine = 'true'`` finds the run in MLflow's search. The store is a local SQLite file (no
server); MLflow 3 refuses its plain-file store unless ``MLFLOW_ALLOW_FILE_STORE=true``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger as _LightningMLFlowLogger


class MLFlowLogger(_LightningMLFlowLogger):
    """``pytorch_lightning.loggers.MLFlowLogger`` whose ``tags`` may be a list of names."""

    def __init__(self, tags: Sequence[str] | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if tags is not None and not isinstance(tags, Mapping):
            tags = {str(tag): "true" for tag in tags}
        uri = str(kwargs.get("tracking_uri") or "")
        if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(tags=dict(tags) if tags else None, **kwargs)
