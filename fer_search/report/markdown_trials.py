"""report.md's trials: the leaderboard (sampled parameters first, a multi-objective search's by
Pareto rank) and a multi-objective or constrained search's front and choice. Every trial is
named as the figures name it (text.md_trial: `93a3b5dd` #7)."""

from __future__ import annotations

from typing import Any

from fer_search.config import METRIC, is_refit_id
from fer_search.objectives import COSTS
from fer_search.report.pareto import fmt_cost
from fer_search.report.text import (
    fmt_ci,
    fmt_duration,
    fmt_num,
    fmt_pct,
    fmt_value,
    md_cell,
    md_table,
    md_trial,
    plural,
)
from fer_search.report.trials import refit_sources

__all__ = ["md_leaderboard", "md_pareto", "trial_cell"]

MAX_TABLE_PARAMS = 8  # wider Markdown tables stop being readable; report.json keeps them all
MAX_FIXED_SHOWN = 16  # the fixed settings listed under the leaderboard


def table_params(facts: dict[str, Any]) -> list[str]:
    """The sampled settings for the Markdown table, most important first (the first
    objective's importances), at most a screen wide."""
    rows = facts["leaderboard"]
    params = [p for p in facts.get("sampled_params") or [] if rows and p in rows[0]]
    order = list(facts["importances"] or {})
    params.sort(key=lambda p: order.index(p) if p in order else len(order))
    return params[:MAX_TABLE_PARAMS]


def table_costs(facts: dict[str, Any]) -> list[str]:
    """The costs a multi-objective or constrained search ranks or limits trials by."""
    names = [o["metric"] for o in (facts.get("objectives") or [])[1:]]
    names += [key[4:] for key in facts.get("constraints") or {} if key[4:] not in names]
    return [name for name in names if name in COSTS]


def leaderboard_order(facts: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    if facts.get("objectives"):
        over = " (trials over a constraint after them)" if facts.get("constraints") else ""
        return f"by Pareto rank{over}, then best {METRIC}"
    if rows and "eligible" in rows[0]:  # a constrained search ranks what it allows first
        return f"the trials the constraints and `pick` allow first, then best {METRIC}"
    return f"best {METRIC} first"


def md_leaderboard(facts: dict[str, Any]) -> str:
    rows, params, total = facts["leaderboard"], table_params(facts), facts["leaderboard_rows"]
    refits = facts.get("refits") or 0
    kinds = f": {plural(total - refits, 'searched trial')} and {plural(refits, 'refit')}"
    shown = f"all {total}" if len(rows) == total else f"top {len(rows)} of {total}"
    title = f"## Leaderboard ({shown}{kinds if refits else ''}, {leaderboard_order(facts, rows)})"
    if not rows:
        return f"{title}\n\nNo trials recorded."
    ranked = bool(facts.get("objectives"))
    costs = table_costs(facts)
    header = ["#", "trial", *(["Pareto rank"] if ranked else []), "status", "val acc",
              *costs, "val F1", "best epoch", "epochs", "time", *params]  # fmt: skip
    align = "rl" + ("r" if ranked else "") + "lr" + "r" * len(costs) + "rrrr" + "l" * len(params)
    cut = set(facts.get("time_budget_trials") or ())
    best = facts.get("best_trial_id") if rows[0]["trial_id"] != facts.get("best_trial_id") else None
    body = [
        [
            str(i),
            trial_cell(r, facts) + (" (best/)" if r["trial_id"] == best else ""),
            *([fmt_value(r.get("pareto_rank"))] if ranked else []),
            "time budget" if r["trial_id"] in cut else r["status"] or "—",
            fmt_ci(r[METRIC], r.get(f"{METRIC}_ci95"), percent=True),
            *(fmt_cost(c, r.get(c)) for c in costs),
            fmt_num(r["val_f1"], 3),
            fmt_value(r["best_epoch"]),
            fmt_value(r["epochs"]),
            fmt_duration(r["time_s"]),
            *(fmt_value(r.get(p)) for p in params),
        ]
        for i, r in enumerate(rows, 1)
    ]
    notes = []
    if ranked:
        notes.append(
            "Pareto rank 1 is the front of the feasible trials; rank 2 the front once rank 1 is "
            "set aside, and so on; — for a trial over a constraint or without a score."
        )
    if total > len(rows):
        notes.append(
            f"{plural(total - len(rows), 'more trial is', 'more trials are')} not shown: all "
            f"{total} are in [leaderboard.csv](leaderboard.csv)."
        )
    hidden = len(facts.get("sampled_params") or []) - len(params)
    if hidden > 0:
        notes.append(
            f"{plural(hidden, 'more sampled parameter is', 'more sampled parameters are')} "
            "in report.json."
        )
    notes += md_fixed(facts.get("fixed_params") or {})
    return "\n\n".join([title, md_table(header, align, body), *notes])


def md_fixed(fixed: dict[str, Any]) -> list[str]:
    """The settings every trial shared: what the table leaves out, said once."""
    if not fixed:
        return []
    items = [f"{md_cell(k)} {fmt_value(v)}" for k, v in list(fixed.items())[:MAX_FIXED_SHOWN]]
    more = len(fixed) - MAX_FIXED_SHOWN
    rest = f" and {more} more in report.json" if more > 0 else ""
    return [f"Fixed in every trial ({len(fixed)}): {', '.join(items)}{rest}."]


def trial_cell(row: dict[str, Any], facts: dict[str, Any] | None = None) -> str:
    """`93a3b5dd` #118 (text.md_trial), as the figures name the trial; a refit also by the trial
    whose configuration it trained again: `refit` of `93a3b5dd` #118."""
    cell = md_trial(row["trial_id"], row.get("trial_number"))
    trial_id = str(row["trial_id"])
    experiment = (facts or {}).get("experiment") or {}
    source = refit_sources(experiment).get(trial_id) if is_refit_id(trial_id) else None
    if source:
        numbers = (facts or {}).get("trial_numbers") or {}
        cell += f" of {md_trial(source, numbers.get(source))}"
    return cell


def md_name(trial_id: Any, facts: dict[str, Any]) -> str:
    """A trial named in prose or a table the way the leaderboard names it."""
    number = (facts.get("trial_numbers") or {}).get(str(trial_id))
    return trial_cell({"trial_id": trial_id, "trial_number": number}, facts)


def md_pareto(facts: dict[str, Any]) -> str:
    """A multi-objective or constrained search: the front, the choice, and what stopping trials
    on val_acc alone means for the other objectives."""
    objectives, limits = facts.get("objectives") or [], facts.get("constraints") or {}
    if not objectives and not limits:
        return ""
    names = [o["metric"] for o in objectives]
    lines = ["## Objectives and constraints", ""]
    if objectives:
        said = ", ".join(f"{o['metric']} ({o['mode']})" for o in objectives)
        lines.append(
            f"A multi-objective search: {said}, sampled by Optuna's multi-objective TPE. Costs "
            "are measured once per trial on its own model before training: parameters, the "
            "FLOPs of one image's forward pass (torch.utils.flop_counter) and latency_ms, the "
            "median of 30 batch-1 forward passes on the CPU with one thread."
        )
    if limits:
        over = plural(len(facts.get("infeasible_trials") or []), "scored trial exceeds",
                      "scored trials exceed")  # fmt: skip
        lines.append(
            "\nConstraints: "
            + ", ".join(f"{key} {fmt_cost(key[4:], value)}" for key, value in limits.items())
            + f" (Optuna trial constraints; {over} them, never on the front nor chosen)."
        )
    lines += ["", ASHA_SENTENCE.format(scheduler=facts["experiment"].get("scheduler", "asha"))]
    front = facts.get("pareto_front") or []
    cut = set(facts.get("time_budget_trials") or ())
    if objectives:
        costs = [*names[1:], *(c for c in ("params", "flops", "latency_ms") if c not in names)]
        header = ["trial", "status", "val acc", *costs]
        body = [
            [md_name(r["trial_id"], facts),
             "time budget" if r["trial_id"] in cut else r.get("status") or "—",
             fmt_pct(r.get(METRIC)), *(fmt_cost(c, r.get(c)) for c in costs)]
            for r in front
        ]  # fmt: skip
        lines += [
            "",
            f"Pareto-optimal trials ({len(front)}, best {METRIC} first; report.json "
            "`pareto_front`; the leaderboard's Pareto rank 1):",
            "",
            md_table(header, "llr" + "r" * len(costs), body),
        ]
    pick, picked = facts.get("pick"), facts.get("picked_trial_id")
    if facts.get("pick_note"):
        lines += ["", f"**{facts['pick_note']}.**"]
    elif pick and picked:
        lines += [
            "",
            f"best/ is {md_name(picked, facts)}: the highest {METRIC} among the Pareto-optimal "
            f"trials with {pick} (`pick`).",
        ]
    elif objectives:
        lines += [
            "",
            f"No `pick`: best/ is the feasible trial with the highest {METRIC}; `--pick "
            "'latency_ms<=2'` would choose among the front instead.",
        ]
    return "\n".join(lines)


ASHA_SENTENCE = (
    "The scheduler ({scheduler}) stops trials on val_acc alone: a trial's costs do not change "
    "while it trains, so a cheap model that learns slowly can be stopped at a rung before it "
    "catches up. A pruned trial is on the front at the accuracy it had when stopped (a lower "
    "bound of what its settings reach), and Optuna records it as PRUNED, without values, so "
    "the sampler learns the trade-off from completed trials."
)
