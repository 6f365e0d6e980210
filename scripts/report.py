"""Summarize a multirun: ``python scripts/report.py <multirun folder> [--metrics a,b] [--out DIR]``.

Writes report.md (mean ± std over seeds, grouped by the swept keys, best row marked), report.json
and one PNG per metric and swept key into the multirun folder, and prints the table.
The same as ``hyperpred-report``.
"""

from hyperpred.console import report_command

if __name__ == "__main__":
    raise SystemExit(report_command())
