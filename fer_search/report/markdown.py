"""report.md from the facts: one section per function, numbers formatted for reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_search.config import METRIC, MODE, REFIT_ID, SCHEDULERS, recorded_scheduler
from fer_search.report.markdown_final import md_final, md_per_class
from fer_search.report.markdown_importance import md_importances
from fer_search.report.markdown_trials import md_leaderboard, md_name, md_pareto
from fer_search.report.text import (
    fmt_ci,
    fmt_duration,
    fmt_pct,
    is_number,
    md_cell,
    md_table,
)

__all__ = ["render_markdown"]

# experiment.json's phases (tuning.phases) by what they did; the others are bookkeeping
PHASE_NAMES = {"tune": "the search", "refit": "the refit", "final_evaluation":
               "the final evaluation"}  # fmt: skip


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
        f"- Started {exp.get('started', '?')}, {finished}{md_wall_time(facts)}",
        f"- Trials: {md_counts(counts, recorded_scheduler(exp))}",
        *md_warm_start(exp.get("warm_start")),
        f"- Epochs: {md_epochs(facts)}",
        *md_refit(facts),
        f"- Selection metric: `{exp.get('metric', METRIC)}` ({exp.get('mode', MODE)}) on "
        "PublicTest (the val split); PrivateTest (test) is never used to select",
    ]
    return "\n".join(lines)


def md_wall_time(facts: dict[str, Any]) -> str:
    """How long it took, and what the wall time covers (facts.wall_time): experiment.json's
    `wall_time_s` runs from the Tuner's start to the final evaluation's (the search, the study's
    bookkeeping, the refit); from `started` to `finished` also holds the set-up before the
    search and the final evaluation."""
    times: dict[str, Any] = facts.get("wall_time") or {}
    wall, span, outside = times.get("wall_time_s"), times.get("span_s"), times.get("outside_s")
    text = f" ({fmt_duration(span)})" if is_number(span) else ""
    text += f"; wall time {fmt_duration(wall)}"
    if not is_number(wall):
        return text
    what = "the search and the refit" if facts["experiment"].get("refit") else "the search"
    text += f" ({what}: from the Tuner's start to the final evaluation's)"
    phases: dict[str, float] = {
        k: v for k, v in (times.get("phases") or {}).items() if is_number(v)
    }
    named = [f"{PHASE_NAMES[k]} {fmt_duration(v)}" for k, v in phases.items()
             if k in PHASE_NAMES and k != "final_evaluation" and v >= 1]  # fmt: skip
    if len(named) > 1:
        text += f", of which {', '.join(named)}"
    if isinstance(outside, int | float) and outside >= 1:
        final = phases.get("final_evaluation")
        evaluation = f"the final evaluation ({fmt_duration(final)})" if is_number(final) else (
            "the final evaluation")  # fmt: skip
        text += (
            f"; the other {fmt_duration(outside)} are the set-up before the search and "
            f"{evaluation} after it"
        )
    return text


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
            f"- Refit: trial {md_name(member.get('from_trial', '?'), facts)}'s configuration "
            f"trained again from scratch for {member.get('epochs', '?')} epochs as "
            f"`{member['id']}`{score}{state}"
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


def md_figures(facts: dict[str, Any]) -> str:
    """Each figure with the trials it draws under it (report.json's `figure_trials`)."""
    names = facts.get("figures") or []
    captions = facts.get("figure_trials") or {}
    parts = []
    for name in names:
        part = f"![{Path(name).stem.replace('_', ' ')}]({name})"
        if captions.get(name):
            part += f"\n\n*{md_cell(captions[name])}*"
        parts.append(part)
    return "## Figures\n\n" + "\n\n".join(parts) if parts else ""


def md_notes(facts: dict[str, Any]) -> str:
    notes = facts["notes"]
    return "## Notes\n\n" + "\n".join(f"- {md_cell(n)}" for n in notes) if notes else ""
