"""Run-start conventions (``conf/extras/default.yaml``), as lightning-hydra-template's ``extras``.

Before any zoo is built: silence warnings known to be harmless, refuse an experiment run whose
tags would not tell it apart (or that wandb would reject after minutes of work), and print the
config tree the run will use (also saved to ``<run folder>/config_tree.log``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hyperpred.errors import ConfigError
from hyperpred.wandb_env import check_wandb_mode

log = logging.getLogger(__name__)

#: The tags of conf/train.yaml: a run that only has these is a development run, not an experiment.
DEV_TAGS = ("dev",)
#: wandb refuses longer tags (at the end of a run's setup, after the zoo is built).
MAX_TAG_LENGTH = 64

#: Warnings that say nothing actionable about a hyperpred run (regexes on the message).
KNOWN_WARNINGS = (
    # Lightning 2.6 under torch >= 2.10: an internal deprecation, not the user's code.
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # Short runs (debug modes, tests): fewer batches per epoch than the logging interval.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # The zoo's tensors are already in memory: worker processes would only copy them.
    r".*does not have many workers",
    # An interactive shell on a SLURM node: Lightning suggests srun, which would not help here.
    r"The `srun` command is available on your system but is not used",
)

#: Config keys printed first, in this order; every other key follows in the config's own order.
TREE_ORDER = ("task_name", "tags", "seed", "experiment", "target", "task", "features", "predictor", "loss")


def apply_extras(cfg: DictConfig) -> None:
    """Apply ``cfg.extras`` (any missing flag counts as off); check ``WANDB_MODE`` in every case."""
    check_before_run(cfg)
    extras = cfg.get("extras") or {}
    if extras.get("enforce_tags"):
        enforce_tags(cfg.get("tags"), hydra_choices().get("experiment"))
    apply_job_log_levels()
    if extras.get("ignore_warnings"):
        silence_known_warnings()
    if extras.get("print_config"):
        from hyperpred.utils.ranks import is_global_zero

        if is_global_zero():  # DDP ranks started by re-running the command line print nothing
            out = cfg.get("paths", {}).get("output_dir")
            print_config_tree(cfg, save_to=Path(out) / "config_tree.log" if out else None)


def check_before_run(cfg: DictConfig) -> None:
    """The checks of every run, with or without extras: ``WANDB_MODE``, loggers' packages, callback needs."""
    check_wandb_mode(cfg)
    check_choices(cfg)


#: Loggers whose package is an optional extra: config key -> (modules, any one of which will do; the pip extra).
OPTIONAL_LOGGERS = {"mlflow": (("mlflow",), "mlflow"), "tensorboard": (("tensorboardX", "tensorboard"), "tensorboard")}


def check_choices(cfg: DictConfig) -> None:
    """Refuse now the logger and callback choices that would fail only when training starts."""
    import importlib.util

    trainer, logger = cfg.get("trainer") or {}, cfg.get("logger")
    for key, (modules, extra) in OPTIONAL_LOGGERS.items():
        if (logger or {}).get(key) and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(f'logger.{key} needs the {modules[0]} package: pip install "hyperpred[{extra}]"')
    for name, node in (cfg.get("callbacks") or {}).items():
        cls = str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]
        if cls.endswith("ProgressBar") and not trainer.get("enable_progress_bar", True):
            raise ConfigError(
                f"callbacks.{name} ({cls}) needs trainer.enable_progress_bar=true, and it is false here "
                "(set by the trainer or experiment config): pass trainer.enable_progress_bar=true"
            )
        if cls == "LearningRateMonitor" and not logger:
            raise ConfigError(
                f"callbacks.{name} (LearningRateMonitor) writes to a logger, and logger is none here: "
                "choose logger=csv|tensorboard|wandb|mlflow, or drop the callback"
            )


def apply_job_log_levels() -> None:
    """Give the loggers named in ``hydra.job_logging.loggers`` their levels again, after importing Lightning.

    Lightning sets its loggers to INFO when it is first imported, which in a console command happens
    after Hydra configured logging: ``debug=default``'s DEBUG level for them would be lost.
    """
    import pytorch_lightning  # noqa: F401  (the import that resets the levels; later imports do not)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    for name, conf in (OmegaConf.select(HydraConfig.get(), "job_logging.loggers") or {}).items():
        if conf and conf.get("level"):
            logging.getLogger(name).setLevel(conf.level)


def silence_known_warnings(patterns: Iterable[str] = KNOWN_WARNINGS) -> None:
    """Ignore the warnings of ``patterns`` for the rest of the process."""
    for pattern in patterns:
        warnings.filterwarnings("ignore", message=pattern)


def hydra_choices() -> dict[str, Any]:
    """The group choices of the Hydra job (``experiment``, ``target``...); empty outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


def enforce_tags(tags: Any, experiment: str | None = None) -> list[str]:
    """Tags must be a list of short strings; an experiment must set its own, not only the default ``dev``."""
    if isinstance(tags, str) or not isinstance(tags, (Sequence, ListConfig)):
        raise ConfigError(f"tags must be a list of strings, e.g. tags=[sine,ablation], got {tags!r}")
    tags = list(tags)
    bad = [t for t in tags if not isinstance(t, str) or not t.strip() or len(t) > MAX_TAG_LENGTH]
    if bad:
        raise ConfigError(f"tags: {bad[0]!r} is not a tag (a non-empty string of at most {MAX_TAG_LENGTH} characters)")
    if not tags:
        raise ConfigError("tags is empty: give the run tags (tags=[...]) so that its logs can be found, or extras=none")
    if experiment and set(tags) <= set(DEV_TAGS):
        raise ConfigError(
            f"tags={tags}: experiment={experiment} has only the default tags; set tags in "
            f"conf/experiment/{experiment}.yaml or pass tags=[...] (extras.enforce_tags=false skips this check)"
        )
    return tags


def print_config_tree(cfg: DictConfig, save_to: Path | None = None, order: Sequence[str] = TREE_ORDER) -> str:
    """Print the config as a rich tree, one branch per top-level key; return (and save) it as plain text."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", style="bold", guide_style="dim")
    for key in [k for k in order if k in cfg] + [k for k in cfg if k not in order]:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        branch.add(
            Syntax(_as_yaml(cfg, str(key)), "yaml", theme="ansi_dark", background_color="default", word_wrap=True)
        )
    console = Console(record=True)
    console.print(tree)
    text = console.export_text()
    if save_to is not None:
        from hyperpred.io import atomic_write_bytes

        save_to.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(save_to, text.encode())
    return text


def _as_yaml(cfg: DictConfig, key: str) -> str:
    """One top-level entry, resolved; as written where it cannot be resolved yet (``???``, a runtime value)."""
    try:
        value = cfg[key]
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception:
        value = OmegaConf.to_container(cfg)[key]
    return OmegaConf.to_yaml(value).strip() if isinstance(value, (dict, list)) else str(value)
