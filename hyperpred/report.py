"""Summarize a Hydra multirun folder: a markdown table (mean ± std over seeds) and PNG plots.

Reads what every job leaves in its folder — ``metrics.json`` and the overrides (``overrides.yaml``
written by train(), or Hydra's ``.hydra/overrides.yaml``) — so it works for grid sweeps, Optuna
studies and launcher runs alike, and for sweeps made by older code. Jobs without metrics (crashed)
are listed, not averaged. Swept keys are the overrides whose value differs between jobs; ``seed``
is averaged over, every other swept key forms the rows.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

from hyperpred.errors import ConfigError
from hyperpred.evaluation.peers.ladder import ladder_lines
from hyperpred.io import atomic_write_bytes, atomic_write_json

#: Metrics shown after the optimized one, when the runs have them.
DEFAULT_METRICS = ("test/pred_query_loss", "test/ratio_vs_trained", "test/ratio_vs_zoo_mean", "test/pred_accuracy")
SEED_KEYS = ("seed",)


@dataclass
class Job:
    folder: Path
    overrides: dict[str, str]
    metrics: dict[str, float | None] | None
    optimized_metric: str | None = None


@dataclass
class Row:
    """One combination of swept values (seeds pooled)."""

    key: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        out = []
        for job in self.jobs:
            v = (job.metrics or {}).get(metric)
            if v is not None and math.isfinite(v):
                out.append(float(v))
        return out

    def mean_std(self, metric: str) -> tuple[float, float, int]:
        vals = self.values(metric)
        if not vals:
            return math.nan, math.nan, 0
        return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def _parse_overrides(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = str(line)
        if "=" not in line or line.startswith("~"):
            continue
        key, value = line.split("=", 1)
        out[key.lstrip("+")] = value
    return out


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def load_job(folder: Path) -> Job | None:
    """A job folder's overrides and metrics; None if the folder is not a job of a multirun."""
    for name in ("overrides.yaml", ".hydra/overrides.yaml"):
        overrides = _read_yaml(folder / name)
        if isinstance(overrides, list):
            break
    else:
        return None
    metrics = None
    if (folder / "metrics.json").is_file():
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
        except json.JSONDecodeError:
            metrics = None
    config = _read_yaml(folder / ".hydra" / "config.yaml") or _read_yaml(folder / "config_resolved.yaml") or {}
    return Job(
        folder,
        _parse_overrides(overrides),
        metrics,
        config.get("optimized_metric") if isinstance(config, dict) else None,
    )


def collect(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir}: no such multirun folder")
    jobs = [
        job
        for sub in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name))
        if sub.is_dir() and (job := load_job(sub))
    ]
    if not jobs:
        raise ConfigError(f"{sweep_dir}: no job folders (subfolders with overrides.yaml or .hydra/overrides.yaml)")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def _as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _value_key(value: str) -> tuple:
    """Numbers by value, lists of numbers (e.g. widths ``[8,8]``) element-wise, anything else as text."""
    if (n := _as_number(value)) is not None:
        return (0, (n,), "")
    try:
        parsed = yaml.safe_load(str(value))
    except yaml.YAMLError:
        parsed = None
    if (
        isinstance(parsed, list)
        and parsed
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in parsed)
    ):
        return (1, tuple(float(x) for x in parsed), "")
    return (2, (), str(value))


def _sort_key(values: tuple[str, ...]) -> tuple:
    return tuple(_value_key(v) for v in values)


def group_rows(jobs: list[Job], keys: list[str]) -> list[Row]:
    rows: dict[tuple[str, ...], Row] = {}
    for job in jobs:
        key = tuple(job.overrides.get(k, "") for k in keys)
        rows.setdefault(key, Row(key)).jobs.append(job)
    return [rows[k] for k in sorted(rows, key=_sort_key)]


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric or metric.endswith("/acc")


def _fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or not math.isfinite(mean):
        return "–"
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


@dataclass
class Report:
    sweep_dir: Path
    jobs: list[Job]
    keys: list[str]
    group_keys: list[str]
    rows: list[Row]
    metrics: list[str]
    primary: str
    best: Row | None
    markdown: str
    plots: list[Path] = field(default_factory=list)


def build_report(
    sweep_dir: str | Path, metrics: list[str] | None = None, seed_keys: tuple[str, ...] = SEED_KEYS
) -> Report:
    """Gather the jobs of a multirun and render the markdown table (no files written)."""
    sweep_dir = Path(sweep_dir)
    jobs = collect(sweep_dir)
    keys = swept_keys(jobs)
    group_keys = [k for k in keys if k not in seed_keys]
    rows = group_rows(jobs, group_keys)
    available = sorted({k for job in jobs for k, v in (job.metrics or {}).items() if v is not None})
    optimized = next((j.optimized_metric for j in jobs if j.optimized_metric), None)
    if metrics:
        missing = [m for m in metrics if m not in available]
        if missing:
            raise ConfigError(
                f"--metrics {missing} not found in any metrics.json of {sweep_dir}; available: {available}"
            )
        chosen = list(metrics)
    else:
        chosen = [m for m in (optimized, *DEFAULT_METRICS) if m and m in available]
        chosen = list(dict.fromkeys(chosen)) or available[:4]
    primary = chosen[0] if chosen else ""
    sign = -1.0 if higher_is_better(primary) else 1.0
    scored = [(sign * r.mean_std(primary)[0], i) for i, r in enumerate(rows) if r.mean_std(primary)[2] > 0]
    best = rows[min(scored)[1]] if scored else None

    lines = [f"# Sweep report: `{sweep_dir.name}`", ""]
    constant = {k: v for k, v in jobs[0].overrides.items() if k not in keys}
    done = sum(j.metrics is not None for j in jobs)
    lines.append(
        f"{len(jobs)} jobs ({done} finished), swept: {', '.join(f'`{k}`' for k in keys) or 'nothing'}; "
        f"mean ± std over {', '.join(seed_keys)} (n = finished jobs per row)."
    )
    if constant:
        lines.append("Fixed overrides: " + " ".join(f"`{k}={v}`" for k, v in constant.items()) + ".")
    if primary:
        lines.append(f"Best row (★) by `{primary}` ({'higher' if sign < 0 else 'lower'} is better).")
    lines += [
        "",
        "| " + " | ".join([*(group_keys or ["run"]), "n", *chosen]) + " |",
        "|" + "---|" * (len(group_keys or [1]) + 1 + len(chosen)),
    ]
    for row in rows:
        n = len([j for j in row.jobs if j.metrics is not None])
        cells = [_fmt(*row.mean_std(m)) for m in chosen]
        label = list(row.key) if group_keys else ["all"]
        if row is best:
            label[0] = f"★ {label[0]}"
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join([*label, str(n), *cells]) + " |")
    lines += ladder_lines(rows, group_keys)  # peer baselines' ladder, when the jobs ran them
    failed = [j for j in jobs if j.metrics is None or (primary and not row_finite(j, primary))]
    if failed:
        lines += ["", "Failed or diverged jobs (not averaged):", ""]
        for j in failed:
            why = "no metrics.json (crashed)" if j.metrics is None else f"{primary} is not finite"
            lines.append(f"- `{j.folder.name}` " + " ".join(f"`{k}={j.overrides.get(k)}`" for k in keys) + f": {why}")
    optuna = _read_yaml(sweep_dir / "optimization_results.yaml")
    if isinstance(optuna, dict) and "best_params" in optuna:
        lines += [
            "",
            f"Optuna best trial: value {optuna.get('best_value')} with "
            + " ".join(f"`{k}={v}`" for k, v in optuna["best_params"].items())
            + ".",
        ]
    return Report(sweep_dir, jobs, keys, group_keys, rows, chosen, primary, best, "\n".join(lines) + "\n")


def row_finite(job: Job, metric: str) -> bool:
    v = (job.metrics or {}).get(metric)
    return v is not None and math.isfinite(v)


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """One PNG per (metric, swept key): mean ± std against the key's values, a line per other setting."""
    from matplotlib.figure import Figure

    paths = []
    plot_keys = report.group_keys or [k for k in report.keys]  # a seed-only sweep: metric vs seed
    for metric in report.metrics:
        for key in plot_keys:
            fig = Figure(figsize=(5.0, 3.4), layout="constrained")
            ax = fig.subplots()
            pooled = key in report.group_keys
            series: dict[tuple[str, ...], list[tuple[str, float, float]]] = defaultdict(list)
            if pooled:
                i = report.group_keys.index(key)
                for row in report.rows:
                    mean, std, n = row.mean_std(metric)
                    if n:
                        series[row.key[:i] + row.key[i + 1 :]].append((row.key[i], mean, std))
            else:  # unpooled: every job is a point
                for job in report.jobs:
                    if row_finite(job, metric):
                        series[()].append((job.overrides.get(key, ""), float(job.metrics[metric]), 0.0))
            if not series:
                continue
            xs_all = sorted({x for pts in series.values() for x, _, _ in pts}, key=lambda v: _sort_key((v,)))
            numeric = all(_as_number(x) is not None for x in xs_all)
            others = [k for k in report.group_keys if k != key]
            for label, pts in sorted(series.items(), key=lambda kv: _sort_key(kv[0])):
                pts = sorted(pts, key=lambda p: _sort_key((p[0],)))
                x = [_as_number(p[0]) if numeric else xs_all.index(p[0]) for p in pts]
                name = ", ".join(f"{k}={v}" for k, v in zip(others, label)) or None
                ax.errorbar(x, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=name)
            if (
                numeric
                and len(xs_all) > 2
                and min(map(float, xs_all)) > 0
                and max(map(float, xs_all)) / min(map(float, xs_all)) >= 100
            ):
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(range(len(xs_all)), xs_all, rotation=30, fontsize=8)
            ax.set_xlabel(key)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} vs {key}" + (" (mean ± std over seeds)" if pooled else ""), fontsize=9)
            if any(lbl for lbl in series if lbl):
                ax.legend(fontsize=7)
            path = out_dir / f"report_{_slug(metric)}_vs_{_slug(key)}.png"
            fig.savefig(path, dpi=100)
            paths.append(path)
    return paths


def _stat_json(stat: tuple[float, float, int]) -> dict[str, float | int | None]:
    mean, std, n = stat
    return {"mean": mean if math.isfinite(mean) else None, "std": std if math.isfinite(std) else None, "n": n}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def write_report(
    sweep_dir: str | Path, metrics: list[str] | None = None, out_dir: str | Path | None = None, plots: bool = True
) -> Report:
    """Build the report and write ``report.md``, ``report.json`` and the PNGs next to the sweep."""
    report = build_report(sweep_dir, metrics)
    out = Path(out_dir) if out_dir else report.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    report.plots = plot_report(report, out) if plots else []
    md = report.markdown + (
        "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in report.plots) + "\n" if report.plots else ""
    )
    report.markdown = md
    atomic_write_bytes(out / "report.md", md.encode())
    atomic_write_json(
        out / "report.json",
        {
            "sweep_dir": str(report.sweep_dir),
            "swept": report.keys,
            "grouped_by": report.group_keys,
            "metrics": report.metrics,
            "best": dict(zip(report.group_keys, report.best.key)) if report.best else None,
            "rows": [
                {
                    "values": dict(zip(report.group_keys, r.key)),
                    "jobs": [j.folder.name for j in r.jobs],
                    **{m: _stat_json(r.mean_std(m)) for m in report.metrics},
                }
                for r in report.rows
            ],
        },
    )
    return report


class SweepReportCallback(Callback):
    """Hydra callback: at the end of every multirun, write the report and name the best job folder.

    Configured in ``conf/hydra/default.yaml`` (``hydra.callbacks.report``). A report that cannot be
    made (e.g. every job crashed) is logged, never raised: the sweep's own outcome stands.
    """

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        import logging

        log = logging.getLogger("hyperpred.report")
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = write_report(sweep_dir, plots=self.plots)
        except Exception as e:  # noqa: BLE001 - reporting must not turn a finished sweep into a failure
            log.warning("No sweep report for %s: %s", sweep_dir, e)
            return
        if report.best is not None:
            mean, std, n = report.best.mean_std(report.primary)
            where = ", ".join(str(j.folder) for j in report.best.jobs)
            setting = " ".join(f"{k}={v}" for k, v in zip(report.group_keys, report.best.key)) or "(single setting)"
            log.info("Best: %s with %s = %.6g ± %.2g over %d job(s): %s", setting, report.primary, mean, std, n, where)
        log.info("Sweep report: %s", sweep_dir / "report.md")
