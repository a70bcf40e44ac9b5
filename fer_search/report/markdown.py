"""report.md from the facts: one section per function, numbers formatted for reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_search.config import METRIC, MODE, REFIT_ID, SCHEDULERS, recorded_scheduler
from fer_search.report.markdown_final import md_final, md_per_class
from fer_search.report.text import (
    fmt_ci,
    fmt_duration,
    fmt_num,
    fmt_pct,
    fmt_value,
    is_number,
    md_cell,
    md_table,
)

__all__ = ["render_markdown"]

MAX_TABLE_PARAMS = 8  # wider Markdown tables stop being readable; report.json keeps them all


def render_markdown(facts: dict[str, Any]) -> str:
    sections = (
        md_header(facts),
        md_leaderboard(facts),
        md_pareto(facts),
        md_lineage(facts),
        md_final(facts),
        md_per_class(facts),
        md_importances(facts),
        md_figures(facts),
        md_notes(facts),
    )
    return "\n\n".join(s for s in sections if s) + "\n"


def md_header(facts: dict[str, Any]) -> str:
    exp, counts = facts["experiment"], facts["counts"]
    finished = f"finished {exp['finished']}" if exp.get("finished") else "not finished"
    lines = [
        f"# fer-search report: {exp.get('name', '?')}",
        "",
        *md_simulated(exp.get("trainer")),
        "```sh",
        str(exp.get("command", "(command not recorded)")),
        "```",
        "",
        f"- Data: {exp.get('data', '?')}",
        f"- Search space: {exp.get('space', '?')}",
        f"- Started {exp.get('started', '?')}, {finished}; "
        f"wall time {fmt_duration(exp.get('wall_time_s'))}",
        f"- Trials: {md_counts(counts, recorded_scheduler(exp))}",
        *md_warm_start(exp.get("warm_start")),
        f"- Epochs: {md_epochs(facts)}",
        *md_refit(facts),
        f"- Selection metric: `{exp.get('metric', METRIC)}` ({exp.get('mode', MODE)}) on "
        "PublicTest (the val split); PrivateTest (test) is never used to select",
    ]
    return "\n".join(lines)


def md_simulated(trainer: Any) -> list[str]:
    """The warning a search with simulated trials opens with (experiment.json's `trainer`)."""
    if not isinstance(trainer, dict) or trainer.get("kind", "engine") == "engine":
        return []
    settings = ", ".join(
        f"{key} {fmt_setting(value)}" for key, value in trainer.items() if key != "kind"
    )
    return [
        f"> **Simulated trials** ({md_cell(str(trainer['kind']))} trainer: {md_cell(settings)}). "
        "No model was trained: each trial waited and reported a learning curve computed from "
        "its configuration, and the final evaluation drew predictions to match. The numbers "
        "below test the search machinery; they are not facial-expression recognition results.",
        "",
    ]


def fmt_setting(value: Any) -> str:
    """A trainer setting in a sentence: numbers short, a curve's parameters as key=value."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}={fmt_setting(v)}" for k, v in value.items()) + ")"
    return f"{value:g}" if is_number(value) else str(value)


def md_warm_start(warm: Any) -> list[str]:
    """The line on the trials `--warm-start` carried over into the study (not counted above)."""
    if not isinstance(warm, dict) or not warm.get("from"):
        return []
    where = ", ".join(f"`{md_cell(str(path))}`" for path in warm["from"])
    skipped = warm.get("skipped") or {}
    left = ""
    if skipped:
        reasons = ", ".join(f"{n} {md_cell(str(why))}" for why, n in skipped.items())
        left = f"; {sum(skipped.values())} skipped ({reasons})"
    return [
        f"- Warm start: {warm.get('trials', 0)} finished trials carried over from {where}{left}; "
        "they seeded TPE and are not counted above nor in the importances"
    ]


def md_refit(facts: dict[str, Any]) -> list[str]:
    refit = facts["experiment"].get("refit")
    if not refit:
        return []
    keys = ("from_trial", "epochs")  # an experiment.json from before refit_top_k held one
    members = refit.get("members") or [{"id": REFIT_ID, **{k: refit.get(k, "?") for k in keys}}]
    state = "" if refit.get("done") else " (not finished)"
    lines = []
    for member in members:
        row = next((r for r in facts["leaderboard"] if r["trial_id"] == member["id"]), None)
        score = (
            f", best {METRIC} {fmt_ci(row[METRIC], row.get(f'{METRIC}_ci95'), True)}" if row else ""
        )
        lines.append(
            f"- Refit: trial `{member.get('from_trial', '?')}`'s configuration trained again "
            f"from scratch for {member.get('epochs', '?')} epochs as `{member['id']}`"
            f"{score}{state}"
        )
    if len(members) > 1:
        lines.append(f"- These {len(members)} refits trained at the same time.")
    return lines


def md_counts(counts: dict[str, int], scheduler: str = "asha") -> str:
    by = f" by {SCHEDULERS[scheduler]}" if SCHEDULERS[scheduler] else ""
    text = (
        f"{counts['trials']} — {counts['completed']} completed, "
        f"{counts['pruned']} pruned{by}, {counts['failed']} failed"
    )
    extra = {
        "time_budget": "stopped by the time budget",
        "nan": "stopped on a NaN loss",
        "running": "still running",
        "other": "other status",
    }
    for key, words in extra.items():
        if counts.get(key):
            text += f", {counts[key]} {words}"
    return text


def md_epochs(facts: dict[str, Any]) -> str:
    exp, consumed, budget = facts["experiment"], facts["epochs_consumed"], facts["epochs_budget"]
    if not budget:
        return f"{consumed} trained (max_t not recorded)"
    decided = facts.get("trials_decided", facts["counts"]["trials"])
    timed_out = facts["counts"].get("time_budget", 0)
    scheduler = recorded_scheduler(exp)
    name = SCHEDULERS[scheduler]
    head = f"{consumed} trained"
    if timed_out:
        head += (
            f"; the {decided} trials that ran to max_t"
            + (f" or were stopped by {name}" if name else "")
            + f" trained {facts.get('epochs_consumed_decided', consumed)}"
        )
    text = f"{head} of {budget} possible ({decided} trials × {exp.get('max_t')} epochs)"
    if not name:
        return text + "; no early stopping (FIFO)"
    if scheduler == "pbt":  # stops no trial; see the lineage section
        return text + f"; PBT perturbs every {exp.get('perturbation_interval') or '?'} epochs"
    settings = {
        "asha": ("grace_period", "reduction_factor"),
        "hyperband": ("reduction_factor",),
        "median": ("grace_period", "min_samples_required"),
    }[scheduler]
    saved = facts["epochs_saved_fraction"]
    words = ", ".join(f"{key.replace('_', ' ')} {exp.get(key, '?')}" for key in settings)
    return text + f"; {name} saved {saved * 100:.1f} % ({words})"


def table_params(facts: dict[str, Any]) -> list[str]:
    """Searched parameters for the Markdown table: most important first, at most a screen wide."""
    rows = facts["leaderboard"]
    params = [p for p in facts["experiment"].get("params") or [] if rows and p in rows[0]]
    order = list(facts["importances"] or {})
    params.sort(key=lambda p: order.index(p) if p in order else len(order))
    return params[:MAX_TABLE_PARAMS]


def md_leaderboard(facts: dict[str, Any]) -> str:
    rows, params, total = facts["leaderboard"], table_params(facts), facts["leaderboard_rows"]
    order = f"best {METRIC} first"
    if rows and "eligible" in rows[0]:  # a constrained or picked search ranks what it allows first
        order = f"the trials the constraints and `pick` allow first, then best {METRIC}"
    title = f"## Leaderboard (top {len(rows)} of {total}, {order})"
    if not rows:
        return f"{title}\n\nNo trials recorded."
    header = ["#", "trial", "status", "val acc", "val F1", "best epoch", "epochs", "time", *params]
    cut = set(facts.get("time_budget_trials") or ())
    body = [
        [
            str(i),
            trial_cell(r),
            "time budget" if r["trial_id"] in cut else r["status"] or "—",
            fmt_ci(r[METRIC], r.get(f"{METRIC}_ci95"), percent=True),
            fmt_num(r["val_f1"], 3),
            fmt_value(r["best_epoch"]),
            fmt_value(r["epochs"]),
            fmt_duration(r["time_s"]),
            *(fmt_value(r.get(p)) for p in params),
        ]
        for i, r in enumerate(rows, 1)
    ]
    table = md_table(header, "rllrrrrr" + "l" * len(params), body)
    notes = []
    if total > len(rows):
        notes.append(
            f"{total - len(rows)} more trials are not shown: all {total} are in "
            "[leaderboard.csv](leaderboard.csv)."
        )
    hidden = len(facts["experiment"].get("params") or []) - len(params)
    if hidden > 0:
        notes.append(f"{hidden} more parameters are in report.json.")
    return "\n\n".join([title, table, *notes])


def trial_cell(row: dict[str, Any]) -> str:
    """`93a3b5dd` #118: Tune's trial id and Optuna's number, as the figures name the trial."""
    number = row.get("trial_number")
    return f"`{row['trial_id']}`" + (f" #{number}" if is_number(number) else "")


def md_lineage(facts: dict[str, Any]) -> str:
    """PBT: which trials copied which, when, and what changed; how Optuna records them."""
    if recorded_scheduler(facts["experiment"]) != "pbt":
        return ""
    entries = facts.get("lineage") or []
    lines = [
        "## PBT lineage",
        "",
        "Every trial started from its own configuration, sampled from the Optuna study before "
        "training. At each perturbation a trial in the bottom quarter copied the weights and "
        "configuration of one in the top quarter and perturbed its lr, weight decay and "
        "augmentation strengths (from the copied trial's value -> to the new one). In "
        "optuna.db a trial PBT never changed is COMPLETE with its best val_acc; one it changed "
        "is PRUNED at the epoch of its first copy (`stopped_by: pbt`), its lineage and final "
        "result in user attributes (`pbt_lineage`, `pbt_final_val_acc`).",
        "",
    ]
    if not entries:
        return "\n".join([*lines, "PBT copied no trial in this search."])
    rows = [
        [str(e["trial_id"]), md_cell(str(e["lineage"])), fmt_pct(e["val_acc"])] for e in entries
    ]
    return "\n".join([*lines, md_table(["trial", "lineage", "val_acc"], "llr", rows)])


def md_importances(facts: dict[str, Any]) -> str:
    title = "## Parameter importances (Optuna, fANOVA)"
    values = facts["importances"]
    if not values:
        note = facts["importances_note"] or "not available"
        return f"{title}\n\n{note[0].upper()}{note[1:]}."
    rows = [[f"`{md_cell(name)}`", f"{value:.3f}"] for name, value in values.items()]
    how = (
        f"Over {facts.get('importances_trials', 0)} trials: completed ones at their best "
        "val_acc, pruned ones at their last epoch's (the value Optuna keeps for a pruned trial), "
        "so a parameter that makes training start fast counts as important."
    )
    return f"{title}\n\n{how}\n\n{md_table(['parameter', 'importance'], 'lr', rows)}"


def md_figures(facts: dict[str, Any]) -> str:
    names = facts.get("figures") or []
    links = [f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in names]
    return "## Figures\n\n" + "\n\n".join(links) if links else ""


def md_notes(facts: dict[str, Any]) -> str:
    notes = facts["notes"]
    return "## Notes\n\n" + "\n".join(f"- {md_cell(n)}" for n in notes) if notes else ""


def md_pareto(facts: dict[str, Any]) -> str:
    """A multi-objective or constrained search: the front, the choice, and what stopping trials
    on val_acc alone means for the other objectives."""
    from fer_search.report.pareto import fmt_cost

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
        over = len(facts.get("infeasible_trials") or [])
        lines.append(
            "\nConstraints: "
            + ", ".join(f"{key} {fmt_cost(key[4:], value)}" for key, value in limits.items())
            + f" (Optuna trial constraints; {over} scored trial{'s' if over != 1 else ''} "
            f"exceed{'s' if over == 1 else ''} them, never on the front nor chosen)."
        )
    lines += ["", ASHA_SENTENCE.format(scheduler=facts["experiment"].get("scheduler", "asha"))]
    front = facts.get("pareto_front") or []
    if objectives:
        costs = [name for name in names[1:]] + [
            c for c in ("params", "flops", "latency_ms") if c not in names
        ]
        header = ["trial", "status", "val acc", *costs]
        body = [
            [f"`{r['trial_id']}`", r.get("status") or "—", fmt_pct(r.get(METRIC)),
             *(fmt_cost(c, r.get(c)) for c in costs)]
            for r in front
        ]  # fmt: skip
        lines += [
            "",
            f"Pareto-optimal trials ({len(front)}, best {METRIC} first; report.json "
            "`pareto_front`):",
            "",
            md_table(header, "llr" + "r" * len(costs), body),
        ]
    pick, picked = facts.get("pick"), facts.get("picked_trial_id")
    if facts.get("pick_note"):
        lines += ["", f"**{facts['pick_note']}.**"]
    elif pick and picked:
        lines += [
            "",
            f"best/ is `{picked}`: the highest {METRIC} among the Pareto-optimal trials with "
            f"{pick} (`pick`).",
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
