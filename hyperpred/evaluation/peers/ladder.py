"""The few-shot ladder of a multirun: one row per swept setting (e.g. K), mean query loss per method.

report.py appends it to report.md when the jobs ran peer baselines (``baselines=[...]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (column, metric) of the ladder, in the order of the issue's table.
COLUMNS = (
    ("predicted", "test/pred_query_loss"),
    ("MAML-1", "test/maml_query_loss_step1"),
    ("MAML-10", "test/maml_query_loss_step10"),
    ("CNP", "test/cnp_query_loss"),
    ("nearest (features)", "test/nearest_query_loss"),
    ("nearest (function)", "test/nearest_fn_query_loss"),
    ("trained on support", "test/trained_query_loss"),
    ("init", "test/init_query_loss"),
    ("pred / MAML-10", "test/ratio_vs_maml"),
    ("pred / CNP", "test/ratio_vs_cnp"),
    ("pred / nearest", "test/ratio_vs_nearest"),
    ("memorization share", "test/memorization_share"),
)
MARKERS = ("test/maml_query_loss_step10", "test/cnp_query_loss", "test/nearest_query_loss")


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    return f"{mean:.4g}"


def ladder_lines(rows: Sequence[Any], group_keys: Sequence[str]) -> list[str]:
    """Markdown lines of the ladder table, or [] when no job has a peer baseline.

    ``rows`` are report.Row objects (``key``, ``values(metric)``); losses are means over each job's test
    tasks (averaged over seeds), ratios are medians over tasks of predicted / baseline.
    """
    if not any(row.values(m) for row in rows for m in MARKERS):
        return []
    present = [(name, m) for name, m in COLUMNS if any(row.values(m) for row in rows)]
    lines = [
        "",
        "## Few-shot ladder (mean query loss on the test tasks; ratios: median over tasks of predicted / peer)",
        "",
        "| " + " | ".join([*(group_keys or ["run"]), *(name for name, _ in present)]) + " |",
        "|" + "---|" * (len(group_keys or [1]) + len(present)),
    ]
    for row in rows:
        label = list(row.key) if group_keys else ["all"]
        lines.append("| " + " | ".join([*label, *(_cell(row.values(m)) for _, m in present)]) + " |")
    return lines
