"""What the study's Markdown documents share: tables, number formats, lists and the provenance line.

Used by ``cosim.study.multibit`` (docs/MULTIBIT.md) and ``cosim.study.validation_report``
(docs/VALIDATION.md); ``md_table``, ``pct`` and ``fmt`` behave as ``cosim.study.report``'s own
``_md_table``, ``_pct`` and ``_fmt``. A missing number (None or NaN) prints as an em dash.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

MISSING = "—"


def missing(x: Any) -> bool:
    """Whether ``x`` is no number: None or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A Markdown table: the header, the ``|---|`` rule, one line per row (cells as ``str``)."""
    return "\n".join(md_table_lines(header, rows))


def md_table_lines(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """``md_table`` as a list of lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + [md_row(r) for r in rows]


def md_row(cells: Iterable[Any]) -> str:
    """One line of a Markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def pct(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.9973`` -> ``'99.73 %'``."""
    if missing(x):
        return MISSING
    return f"{100 * x:.{digits}f} %"


def signed_pp(x: float, digits: int = 1) -> str:
    """A difference of fractions in signed percentage points: ``0.125`` -> ``'+12.5'``."""
    if missing(x):
        return MISSING
    return f"{100 * x:+.{digits}f}"


def fmt(x: Any, fmt: str, scale: float = 1.0) -> str:
    """``fmt.format(scale * x)``, or the em dash for a missing number."""
    if missing(x):
        return MISSING
    return fmt.format(scale * float(x))


def listing(items: list[str]) -> str:
    """Items as prose: ``'a'``, ``'a and b'``, ``'a, b and c'`` (empty: ``''``)."""
    return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + (items[-1] if items else "")


def bullets(items: Iterable[str]) -> list[str]:
    """Markdown bullet lines."""
    return [f"* {x}" for x in items]


def provenance_line(code_version: str, date_utc: str, *details: str) -> str:
    """The provenance sentence of a generated document: 'Code version V, DETAIL, ..., DATE.'"""
    return f"Code version {code_version}, " + ", ".join([*details, date_utc]) + "."
