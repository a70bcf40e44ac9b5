"""report.md's parameter importances: the report's fANOVA per objective beside what
optuna-dashboard shows (PED-ANOVA over COMPLETE trials), each with the trials it rests on."""

from __future__ import annotations

from typing import Any

from fer_search.report.importance import MIN_IMPORTANCE_TRIALS
from fer_search.report.text import md_cell, md_table, plural

__all__ = ["md_importances", "trial_numbers"]

MAX_RANGES = 12  # Optuna numbers past this many runs are left to report.json


def md_importances(facts: dict[str, Any]) -> str:
    title = "## Parameter importances"
    search = facts.get("importances_by_objective") or []
    dashboard = facts.get("dashboard_importances") or []
    if not search and not dashboard:
        note = facts.get("importances_note") or "not available"
        return f"{title}\n\nNot available: {note}."
    columns = [(f"{i['objective']}: fANOVA", i) for i in search if i["values"]]
    columns += [(f"{i['objective']}: optuna-dashboard", i) for i in dashboard if i["values"]]
    lines = [title, ""]
    lines += [f"- {sentence}" for sentence in search_sentences(search)]
    lines += [f"- {sentence}" for sentence in dashboard_sentences(dashboard)]
    if columns:
        order = list(dict.fromkeys(name for _, i in columns for name in i["values"] or {}))
        header = ["parameter", *(head for head, _ in columns)]
        rows = [[f"`{md_cell(name)}`", *(fmt_share((i["values"] or {}).get(name))
                                         for _, i in columns)] for name in order]  # fmt: skip
        lines += ["", md_table(header, "l" + "r" * len(columns), rows)]
    return "\n".join(lines)


def fmt_share(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def search_sentences(search: list[dict[str, Any]]) -> list[str]:
    """What the report's fANOVA rests on: one sentence, or one per objective when they differ."""
    if not search:
        return []
    several = len(search) > 1
    first = search[0]
    same = all(i["trial_numbers"] == first["trial_numbers"] for i in search)
    names = " and ".join(i["objective"] for i in search) if same else first["objective"]
    text = (
        f"**fANOVA** (Optuna's, seeded; the report's), {'one per objective, ' if several else ''}"
        f"over the searched trials: {rests_on(first, names, several)}."
    )
    if first["refits"] or first["warm_start"]:
        skipped = [plural(first["refits"], "refit")] if first["refits"] else []
        if first["warm_start"]:
            skipped.append(f"{plural(first['warm_start'], 'trial')} copied by --warm-start")
        text += f" Left out: {' and '.join(skipped)}, which are no samples of this search."
    sentences = [text]
    if not same:
        sentences += [f"For {i['objective']}: {rests_on(i, i['objective'], several)}."
                      for i in search[1:]]  # fmt: skip
    sentences += [
        f"fANOVA of {i['objective']}: {i['note']}." for i in search if i["note"] and not i["values"]
    ]
    return sentences


def rests_on(importance: dict[str, Any], names: str, several: bool) -> str:
    """`9 trials (#0–#8): 2 completed at their best val_acc, 7 pruned ...`"""
    count, completed, pruned = (
        len(importance["trial_numbers"]),
        importance["completed"],
        importance["pruned"],
    )
    if not count:
        return "none has a value"
    their = "its" if completed == 1 else "their"
    at_best = f"at {their} values in optuna.db" if several else f"at {their} best {names}"
    parts = [f"{plural(completed, 'completed one')} {at_best}"]
    if pruned:
        budget = importance["time_budget"]
        by = f" ({budget} of them by the time budget)" if budget else ""
        if several:
            at = (
                f"at the {names} their leaderboard rows record (Optuna keeps no values for a "
                "pruned trial of a multi-objective study)"
            )
        else:
            at = (
                f"at their last epoch's {names}, the value Optuna keeps for a pruned trial, so a "
                "parameter that makes training start fast counts as important"
            )
        parts.append(f"{plural(pruned, 'pruned one')}{by} {at}")
    return f"{plural(count, 'trial')} ({trial_numbers(importance['trial_numbers'])}): " + (
        "; ".join(parts)
    )


def dashboard_sentences(dashboard: list[dict[str, Any]]) -> list[str]:
    """What optuna-dashboard's Hyperparameter Importance shows, and why it differs."""
    if not dashboard:
        return []
    first = dashboard[0]
    count = first["completed"]
    among = []
    if first["refits"]:
        among.append(plural(first["refits"], "refit"))
    if first["warm_start"]:
        among.append(f"{plural(first['warm_start'], 'trial')} copied by --warm-start")
    counted = f", counting {' and '.join(among)} among them" if among else ""
    which = f" ({trial_numbers(first['trial_numbers'])})" if count else ""
    text = (
        "**optuna-dashboard** (its Hyperparameter Importance: PED-ANOVA over the study's "
        f"COMPLETE trials only{', one per objective' if len(dashboard) > 1 else ''}) rests on "
        f"{plural(count, 'trial')}{which}{counted}"
    )
    notes = list(dict.fromkeys(i["note"] for i in dashboard if i["note"]))
    if notes:
        text += ": " + "; ".join(notes)
    if first["values"] and count < MIN_IMPORTANCE_TRIALS:
        text += f". Read the fANOVA column{'s' if len(dashboard) > 1 else ''} instead"
    return [text + "."]


def trial_numbers(numbers: list[int]) -> str:
    """Optuna trial numbers as runs: `#0–#8`, `#0, #2–#5`; past MAX_RANGES runs, how many."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    if len(runs) > MAX_RANGES:
        return "Optuna numbers in report.json"
    parts = (f"#{a}" if a == b else f"#{a}, #{b}" if b == a + 1 else f"#{a}–#{b}" for a, b in runs)
    return ", ".join(parts)
