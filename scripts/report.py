"""Summarize a multirun: ``python scripts/report.py <multirun folder> [--metrics a,b] [--out DIR]``.

Writes report.md (mean ± std over seeds, grouped by the swept keys, best row marked), report.json
and one PNG per metric and swept key into the multirun folder, and prints the table.
"""

from __future__ import annotations

import argparse
import sys

from hyperpred.errors import HyperpredError
from hyperpred.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    raise SystemExit(main())
