"""The two pieces every Markdown report here is made of: a number in a cell, and a table of cells.

validate/report.py (report.md), bench/report.py (the benchmark report) and publish/model_card.py (README.md
of a variant) all write through these, so a missing value reads "—" and a table is drawn one way everywhere.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

MISSING = "—"


def fmt(value: Any, spec: str = ".3f", suffix: str = "") -> str:
    """``value`` for a table cell: numbers by ``spec`` (``format`` mini-language) plus ``suffix``; None is "—",
    a bool is yes/no, anything else its ``str``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):  # numpy scalars too
        return f"{value:{spec}}{suffix}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines, a blank line after it; ``|`` and newlines inside cells are escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows] + [""]
