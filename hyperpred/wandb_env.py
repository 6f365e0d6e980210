"""``WANDB_MODE`` checked before wandb reads it: an empty value is unset, a wrong one is one line.

``export WANDB_MODE=`` leaves the variable set but empty; ``conf/logger/wandb.yaml`` would pass
``mode=""`` and wandb itself would read the empty variable, and either ends the run with a
pydantic traceback from inside wandb. An empty value means "not set" (offline, the default); any
other value wandb does not know is refused with a message that names the variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from omegaconf import DictConfig

from hyperpred.errors import ConfigError

log = logging.getLogger(__name__)

#: The modes wandb 0.16+ accepts (``run``/``dryrun`` are its old names of online/offline).
WANDB_MODES = ("online", "offline", "disabled", "shared", "run", "dryrun")


def check_wandb_mode(cfg: DictConfig | None = None, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Drop an empty ``WANDB_MODE`` from ``environ``; refuse an unknown one. Returns the mode in force (or None).

    The environment is checked in every case (wandb reads it whenever it is imported and
    initialised); an unknown ``logger.wandb.mode`` of ``cfg`` is refused the same way.
    """
    mode = environ.get("WANDB_MODE")
    if mode is not None and not mode.strip():
        del environ["WANDB_MODE"]
        log.info("WANDB_MODE is set but empty: treated as unset (wandb runs offline)")
        mode = None
    if mode is not None and mode.strip().lower() not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode!r} is not a wandb mode: use one of {', '.join(WANDB_MODES)} (or unset it)")
    node = ((cfg.get("logger") or {}) if cfg is not None else {}).get("wandb")
    if node and "mode" in node:
        configured = node.get("mode")  # resolves ${oc.env:WANDB_MODE,offline} now that the variable is clean
        if configured is not None and str(configured).strip().lower() not in WANDB_MODES:
            raise ConfigError(
                f"logger.wandb.mode={configured!r} is not a wandb mode: use one of {', '.join(WANDB_MODES)}"
            )
        return configured
    return mode
