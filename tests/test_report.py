"""scripts/report.py on multirun folders laid out as Hydra and train() leave them."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyperpred.errors import ConfigError
from hyperpred.report import build_report, write_report
from tests.conftest import ROOT


def _job(sweep: Path, num: int, overrides: list[str], metrics: dict | None, hydra_layout: bool = False) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    target = job / ".hydra" / "overrides.yaml" if hydra_layout else job / "overrides.yaml"
    target.write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/query_loss", "seed": 0}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """width x seed grid; one crashed job, one diverged job (null metric, as json_safe writes NaN)."""
    sweep = tmp_path / "multiruns" / "train" / "2026-01-01_00-00-00"
    losses = {(8, 0): 2.0, (8, 1): 2.2, (8, 2): 2.4, (32, 0): 1.0, (32, 1): 1.4, (128, 0): 3.0}
    num = 0
    for (width, seed), loss in losses.items():
        _job(
            sweep,
            num,
            [f"seed={seed}", f"predictor.hidden=[{width},{width}]", "logger=none"],
            {"val/query_loss": loss, "test/pred_query_loss": loss * 2, "test/ratio_vs_trained": 1.5},
            hydra_layout=num % 2 == 0,
        )
        num += 1
    _job(sweep, num, ["seed=2", "predictor.hidden=[32,32]", "logger=none"], None)  # crashed: no metrics.json
    _job(
        sweep,
        num + 1,
        ["seed=1", "predictor.hidden=[128,128]", "logger=none"],
        {"val/query_loss": None, "test/pred_query_loss": None},
    )
    return sweep


def test_table_groups_by_swept_keys_with_mean_std_over_seeds_and_marks_the_best(grid):
    report = build_report(grid)
    assert report.keys == ["seed", "predictor.hidden"] and report.group_keys == ["predictor.hidden"]
    assert report.metrics[0] == "val/query_loss" and report.primary == "val/query_loss"
    by_width = {row.key[0]: row for row in report.rows}
    mean, std, n = by_width["[8,8]"].mean_std("val/query_loss")
    assert (n, mean) == (3, pytest.approx(2.2)) and std == pytest.approx(statistics.stdev([2.0, 2.2, 2.4]))
    assert by_width["[128,128]"].mean_std("val/query_loss")[2] == 1  # the diverged job is not averaged
    assert report.best is by_width["[32,32]"]
    table = [line for line in report.markdown.splitlines() if line.startswith("| ")]
    assert table[0] == "| predictor.hidden | n | val/query_loss | test/pred_query_loss | test/ratio_vs_trained |"
    assert "| ★ [32,32] | 2 | **1.2 ± 0.28** |" in report.markdown
    assert "| [8,8] | 3 | 2.2 ± 0.2 |" in report.markdown
    assert "`6` `seed=2` `predictor.hidden=[32,32]`: no metrics.json (crashed)" in report.markdown
    assert "`7` `seed=1` `predictor.hidden=[128,128]`: val/query_loss is not finite" in report.markdown
    assert "Fixed overrides: `logger=none`" in report.markdown


def test_write_report_puts_markdown_json_and_error_bar_plots_next_to_the_sweep(grid):
    report = write_report(grid)
    assert (grid / "report.md").read_text() == report.markdown
    names = sorted(p.name for p in report.plots)
    assert names == sorted(
        f"report_{m}_vs_predictor_hidden.png"
        for m in ("val_query_loss", "test_pred_query_loss", "test_ratio_vs_trained")
    )
    assert all((grid / n).stat().st_size > 5000 for n in names)
    data = json.loads((grid / "report.json").read_text())
    assert data["best"] == {"predictor.hidden": "[32,32]"}
    row = next(r for r in data["rows"] if r["values"]["predictor.hidden"] == "[8,8]")
    assert math.isclose(row["val/query_loss"]["mean"], 2.2) and row["val/query_loss"]["n"] == 3


def test_accuracy_metrics_rank_higher_as_better(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (lr, acc) in enumerate([("0.1", 0.5), ("0.01", 0.9)]):
        _job(sweep, i, [f"optimizer.lr={lr}"], {"test/pred_accuracy": acc})
    report = build_report(sweep, metrics=["test/pred_accuracy"])
    assert report.best.key == ("0.01",)
    with pytest.raises(ConfigError, match="test/nope"):
        build_report(sweep, metrics=["test/nope"])


def test_cli_reports_and_fails_clearly_on_a_folder_without_jobs(grid, tmp_path):
    ok = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(grid), "--metrics", "test/pred_query_loss"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        "| ★ [32,32] | 2 | **2.4 ± 0.57** |" in ok.stdout
        and (grid / "report_test_pred_query_loss_vs_predictor_hidden.png").is_file()
    )
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such multirun folder" in bad.stderr and "Traceback" not in bad.stderr
