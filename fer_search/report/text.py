"""Numbers and tables formatted for reading, for report.md."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "fmt_ci",
    "fmt_duration",
    "fmt_num",
    "fmt_p",
    "fmt_pct",
    "fmt_pp",
    "fmt_value",
    "is_number",
    "md_cell",
    "md_table",
    "md_trial",
    "plural",
    "trial_name",
]


def fmt_pct(value: Any) -> str:
    return "—" if not is_number(value) else f"{value * 100:.2f} %"


def fmt_num(value: Any, digits: int = 4) -> str:
    return "—" if not is_number(value) else f"{value:.{digits}f}"


def fmt_value(value: Any) -> str:
    """A parameter value, short: 0.00031 -> 3.10e-04, 64.0 -> 64, True -> true."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.2e}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4g}"
    return md_cell(str(value))


def fmt_ci(value: Any, interval: Any, percent: bool) -> str:
    """A figure with its 95 % interval when final.json has one: 68.74 % (95 % CI 67.2–70.2)."""
    text = fmt_pct(value) if percent else fmt_num(value)
    if not (is_number(value) and isinstance(interval, list) and len(interval) == 2):
        return text
    if not all(is_number(v) for v in interval):
        return text
    low, high = (f"{v * 100:.1f}" if percent else f"{v:.3f}" for v in interval)
    return f"{text} (95 % CI {low}–{high})"


def fmt_pp(value: float) -> str:
    """A difference of accuracies in percentage points, with a true minus sign."""
    return f"{value * 100:.1f}".replace("-", "−")


def fmt_p(value: float) -> str:
    if value < 0.001:
        return "p < 0.001"
    return f"p = {value:.3f}" if value < 0.01 else f"p = {value:.2f}"


def fmt_duration(seconds: Any) -> str:
    if not is_number(seconds):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], align: str, rows: list[list[str]]) -> str:
    """align: one letter per column, l or r."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def trial_name(trial_id: Any, number: Any = None) -> str:
    """A trial as every figure and table names it: Tune's trial id (its directory, its
    leaderboard.csv row, final.json) and Optuna's trial number (optuna-dashboard's "Trial 7",
    TensorBoard's run trial_007_<id>): `93a3b5dd #7`; the id alone where none was recorded."""
    return f"{trial_id} #{number}" if is_number(number) else str(trial_id)


def md_trial(trial_id: Any, number: Any = None) -> str:
    """trial_name in Markdown: `93a3b5dd` #7."""
    return f"`{md_cell(str(trial_id))}`" + (f" #{number}" if is_number(number) else "")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 trial`, `2 trials`; `many` for a plural that is not noun + s."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
