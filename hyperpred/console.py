"""Console commands: ``hyperpred-train``, ``-eval``, ``-predict``, ``-build-zoo``, ``-report``.

Each is also what the script of the same name in ``scripts/`` runs, so a checkout and an installed
package run the same code. Configs come from the checkout's ``conf/`` when hyperpred is imported
from a checkout (editable install, ``PYTHONPATH``), so an edit there applies at once; otherwise from
the copy that ``setup.py`` ships inside the package (``pkg://hyperpred.conf``). Hydra's own
``--config-dir DIR`` puts a user's folder of configs in front of them, from any working folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from hyperpred.cli import run_entry
from hyperpred.run.paths import absolute_paths

#: The configs inside an installed package (setup.py maps the checkout's conf/ to ``hyperpred/conf``).
PACKAGED_CONF = "pkg://hyperpred.conf"


def config_path() -> str:
    """The config folder Hydra searches: the checkout's ``conf/`` if there is one, else the packaged copy."""
    checkout = Path(__file__).resolve().parent.parent / "conf"
    return str(checkout) if (checkout / "train.yaml").is_file() else PACKAGED_CONF


def _command(config_name: str, body: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """``body`` behind ``@hydra.main`` with the shipped configs (command line, multirun, ``--config-dir``)."""
    return hydra.main(version_base="1.3", config_path=config_path(), config_name=config_name)(body)


def _train(cfg: DictConfig) -> float | None:
    from hyperpred.extras import apply_extras

    run_entry(apply_extras, cfg)  # its checks come before Lightning is even imported
    absolute_paths(cfg)  # hydra.job.chdir=true: the zoo cache and ckpt_path stay where the command started

    from hyperpred.run.results import optimized_value
    from hyperpred.train import train

    metrics = run_entry(train, cfg)
    return run_entry(lambda c: optimized_value(c, metrics), cfg)  # what a sweeper (hparams_search=optuna) optimizes


def _evaluate(cfg: DictConfig) -> None:
    from hyperpred.evaluate import evaluate

    run_entry(evaluate, absolute_paths(cfg))


def _build_zoo(cfg: DictConfig) -> None:
    from hyperpred.extras import apply_extras

    run_entry(apply_extras, cfg)
    absolute_paths(cfg)

    from hyperpred.zoo.jobs import build_zoo

    print(run_entry(build_zoo, cfg), flush=True)  # the last line printed is the zoo's folder


def predict(cfg: DictConfig) -> dict:
    """Predict one target from ``cfg.support`` and write ``<out>.safetensors`` and ``<out>.json``."""
    from hyperpred.api import predict_to_files

    arch = OmegaConf.to_container(cfg.arch, resolve=True) if OmegaConf.is_config(cfg.arch) else cfg.arch
    result = predict_to_files(cfg.ckpt_path, arch, cfg.support, cfg.out)
    fit = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith("support_"))
    print(f"wrote {result['weights']} and {result['arch']} ({fit} on its own {cfg.support})")
    print(f'load it with: model = hyperpred.load_target("{result["weights"]}")')
    return result


def _predict(cfg: DictConfig) -> None:
    run_entry(predict, cfg)


train_command = _command("train", _train)
eval_command = _command("eval", _evaluate)
build_zoo_command = _command("build_zoo", _build_zoo)
predict_command = _command("predict", _predict)


def report_command(argv: list[str] | None = None) -> int:
    """Summarize a multirun folder: ``hyperpred-report <multirun folder> [--metrics a,b] [--out DIR]``.

    Writes report.md (mean ± std over seeds, grouped by the swept keys, best row marked), report.json
    and one PNG per metric and swept key into the multirun folder, and prints the table.
    """
    from hyperpred.errors import HyperpredError
    from hyperpred.report import write_report

    parser = argparse.ArgumentParser(description=report_command.__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (outputs/multiruns/<task>/<time>)")
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric names; the first ranks rows (default: optimized_metric, test metrics)",
    )
    parser.add_argument("--out", default=None, help="where to write (default: the multirun folder)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dir, args.metrics.split(",") if args.metrics else None, args.out)
    except HyperpredError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown)
    print(f"wrote {report.sweep_dir if args.out is None else args.out}/report.md and {len(report.plots)} plot(s)")
    return 0
