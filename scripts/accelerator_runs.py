"""The runs of scripts/accelerator_check.sh: each experiment on one device, timed, collected in one folder.

    python scripts/accelerator_runs.py --mode gpu --out DIR        # full size, trainer=gpu zoo.device=cuda
    python scripts/accelerator_runs.py --mode cpu-full --out DIR   # the same runs on the CPU (the reference)
    python scripts/accelerator_runs.py --mode cpu --out DIR        # dry mode: tiny sizes on the CPU

Runs go to ``--work`` (Hydra run folders, zoo cache); DIR receives only the results, few files:
``<run>.metrics.json`` per run, ``bench.txt``, ``timing.md`` and ``timing.json``. A failed run is
recorded with its exit code and the end of its log, and the others still run; the exit code is
non-zero when any run failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Tiny sizes for the dry mode: every code path, seconds per run.
DRY = [
    "zoo.num_targets=128",
    "zoo.shard_size=64",
    "zoo.steps=20",
    "trainer.max_epochs=2",
    "data.batch_size=16",
    "finetune.max_factor=0.2",
]
#: Columns of the timing table taken from metrics.json (when the run has them).
METRIC_COLUMNS = ("test/pred_query_loss", "test/ratio_vs_trained", "test/pred_accuracy", "test/accuracy_ratio")


@dataclass
class Run:
    name: str
    overrides: list[str] = field(default_factory=list)
    script: str = "train.py"


def runs(mode: str) -> list[Run]:
    """The issue's list: default, sine_generalization, digits_conv, bf16-mixed, and the zoo bench."""
    device = ["trainer=gpu", "zoo.device=cuda"] if mode == "gpu" else ["trainer=cpu", "zoo.device=cpu"]
    size = DRY if mode == "cpu" else []
    out = [
        Run("default", [*device, *size]),
        Run("sine_generalization", ["experiment=sine_generalization", *device, *size]),
        Run("digits_conv", ["experiment=digits_conv", *device, *size]),
        Run("default_bf16", [*device, "trainer.precision=bf16-mixed", *size]),
    ]
    bench = ["--device", "cuda"] if mode == "gpu" else ["--device", "cpu"]
    bench += (
        ["--n-mlp", "128", "--n-conv", "16", "--n-linear", "128", "--seed-n", "16", "--repeat", "1"]
        if mode == "cpu"
        else ["--n-mlp", "65536", "--n-conv", "1024", "--n-linear", "65536"]
    )
    out.append(Run("bench_zoo", bench, script="bench_zoo.py"))
    return out


def execute(run: Run, work: Path, out: Path) -> dict:
    """Run one command, time it, keep its log in ``work`` and its metrics in ``out``."""
    cmd = [sys.executable, str(ROOT / "scripts" / run.script), *run.overrides]
    if run.script == "train.py":
        cmd += [f"hydra.run.dir={work / 'runs' / run.name}", f"paths.cache_dir={work / 'cache'}"]
    log = work / f"{run.name}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    record = {"run": run.name, "command": " ".join(cmd[1:]), "exit_code": code, "wall_seconds": round(wall, 2)}
    text = log.read_text(errors="replace")
    if code != 0:
        record["log_tail"] = text[-3000:]
    if run.script == "bench_zoo.py":
        (out / "bench.txt").write_text(text)
        record["bench_lines"] = [line for line in text.splitlines() if " speedup: " in line]
        return record
    metrics_path = work / "runs" / run.name / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        (out / f"{run.name}.metrics.json").write_text(json.dumps(metrics, indent=2))
        record.update(summary(metrics))
    return record


def summary(metrics: dict) -> dict:
    """Zoo and predictor throughput, and the headline metrics, from one run's metrics.json."""
    zoo_s, trained = metrics.get("zoo/seconds"), metrics.get("zoo/targets_trained")
    fit_s, steps = metrics.get("fit/seconds"), metrics.get("fit/steps")
    return {
        "zoo_seconds": zoo_s,
        "zoo_targets_per_s": round(trained / zoo_s, 1) if zoo_s and trained else None,
        "predictor_steps_per_s": round(steps / fit_s, 2) if fit_s and steps else None,
        **{k: metrics[k] for k in METRIC_COLUMNS if k in metrics},
    }


def table(mode: str, records: list[dict]) -> str:
    """A markdown table: one row per run."""
    cols = ["run", "exit_code", "wall_seconds", "zoo_seconds", "zoo_targets_per_s", "predictor_steps_per_s"]
    cols += list(METRIC_COLUMNS)
    lines = [f"mode: {mode}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    for r in records:
        lines += r.get("bench_lines", [])
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("gpu", "cpu-full", "cpu"), default="gpu")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "accelerator_check")
    parser.add_argument("--work", type=Path, default=None, help="run folders and zoo cache (default: OUT/work)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these (names as in the table)")
    args = parser.parse_args()
    out, work = args.out, args.work or args.out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.mode == "gpu":
        import torch

        if not torch.cuda.is_available():
            print("accelerator_runs.py: --mode gpu but torch sees no GPU (use --mode cpu for the dry run)")
            return 1
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    records = []
    for run in runs(args.mode):
        if args.only and run.name not in args.only:
            continue
        record = execute(run, work, out)
        records.append(record)
        print(f"{run.name}: exit {record['exit_code']}, {record['wall_seconds']} s", flush=True)
    (out / "timing.json").write_text(json.dumps(records, indent=2))
    (out / "timing.md").write_text(table(args.mode, records))
    print(table(args.mode, records))
    return 0 if all(r["exit_code"] == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
