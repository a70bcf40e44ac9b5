"""Rebuild a search's report from its results directory: report.md, report.json and two figures.

Reads only the files the search wrote (experiment.json, leaderboard.csv, each trial's
progress.csv, final.json, optuna.db) and never imports Ray, so a report can be rebuilt on any
machine that has a copy of the directory. Nothing here generates timestamps, so rebuilding the
same directory gives the same report.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC, MODE, REFIT_ID, is_refit_id
from fer_search.errors import UserError

__all__ = ["build_report", "load_results"]

REQUIRED_FILES = ("experiment.json", "leaderboard.csv")
STATUSES = ("completed", "pruned", "failed", "nan", "running")
TEXT_COLUMNS = ("trial_id", "status", "node", "trial_dir", "error")
NUMBER_COLUMNS = (METRIC, "val_f1", "best_epoch", "epochs", "time_s")
CURVE_COLUMNS = (
    "epoch",
    METRIC,
    "val_loss",
    "train_acc",
    "train_loss",
    "timestamp",
    "time_total_s",
)
FIGURES = ("learning_curves.png", "best_so_far.png", "confusion_test.png")
MAX_TABLE_PARAMS = 8  # wider Markdown tables stop being readable; report.json keeps them all
# The experiment's ISO start time may be naive local time written on another machine; trust it
# only when it falls shortly before the first trial started.
MAX_START_GAP_S = 3600.0


# ---------------------------------------------------------------- reading
def load_results(exp_dir: Path | str) -> dict[str, Any]:
    """Read a results directory.

    Returns experiment (dict), leaderboard (DataFrame, best first), final (dict or None),
    curves (trial_id -> progress DataFrame, leaderboard order, only trials with rows) and
    notes (what could not be read, one sentence each).
    """
    exp_dir = Path(exp_dir)
    check_results_dir(exp_dir)
    experiment = read_json(exp_dir / "experiment.json")
    if not isinstance(experiment, dict):
        raise UserError(f"{exp_dir / 'experiment.json'} must hold a JSON object")
    leaderboard = read_leaderboard(exp_dir / "leaderboard.csv", experiment.get("mode", MODE))
    final, notes = read_final(exp_dir / "final.json")
    curves, curve_notes = read_curves(exp_dir, leaderboard)
    return {
        "experiment": experiment,
        "leaderboard": leaderboard,
        "final": final,
        "curves": curves,
        "notes": notes + curve_notes,
    }


def check_results_dir(exp_dir: Path) -> None:
    if not exp_dir.is_dir():
        raise UserError(f"results directory {str(exp_dir)!r} does not exist")
    missing = [name for name in REQUIRED_FILES if not (exp_dir / name).is_file()]
    if not missing:
        return
    inside = sorted(p.parent.name for p in exp_dir.glob("*/experiment.json"))
    hint = f"; it holds experiments: {', '.join(inside)}" if inside else ""
    raise UserError(
        f"{str(exp_dir)!r} is not a fer-search results directory: missing "
        f"{' and '.join(missing)}{hint}"
    )


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None


def read_final(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """final.json, or None when it is missing or unreadable (an interrupted search)."""
    if not path.is_file():
        return None, []
    try:
        final = read_json(path)
    except UserError as exc:
        return None, [f"final evaluation omitted: {exc}"]
    if not isinstance(final, dict):
        return None, [f"final evaluation omitted: {path} does not hold a JSON object"]
    return final, []


def read_leaderboard(path: Path, mode: str = MODE) -> pd.DataFrame:
    """leaderboard.csv with its standard columns present and typed, best first."""
    try:
        board = pd.read_csv(path, dtype={name: str for name in TEXT_COLUMNS})
    except pd.errors.EmptyDataError:
        board = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CSV ({first})") from None
    if len(board.columns) and "trial_id" not in board.columns:
        raise UserError(f"{path} has no trial_id column (has {', '.join(map(str, board.columns))})")
    for name in TEXT_COLUMNS:
        board[name] = board[name].fillna("").astype(str) if name in board else ""
    for name in NUMBER_COLUMNS:
        board[name] = pd.to_numeric(board[name], errors="coerce") if name in board else np.nan
    board["status"] = board["status"].str.strip().str.lower()
    # Stable, so ties keep the order the search wrote them in.
    board = board.sort_values(METRIC, ascending=mode == "min", na_position="last", kind="stable")
    return board.reset_index(drop=True)


def read_curves(exp_dir: Path, board: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    curves: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    for trial_id, trial_dir in zip(board["trial_id"], board["trial_dir"], strict=True):
        curve = read_progress(exp_dir / trial_dir) if trial_dir.strip() else None
        if curve is None:
            missing.append(trial_id)
        else:
            curves[trial_id] = curve
    if not missing:
        return curves, []
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return curves, [f"{len(missing)} of {len(board)} trials have no progress.csv rows: {shown}"]


def read_progress(trial_dir: Path) -> pd.DataFrame | None:
    """A trial's progress.csv with an `epoch` column and numeric metrics; None when empty."""
    path = trial_dir / "progress.csv"
    if not path.is_file():
        return None
    try:
        curve = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if curve.empty:
        return None
    if "epoch" not in curve:
        fallback = curve.get("training_iteration")
        curve["epoch"] = fallback if fallback is not None else np.arange(1, len(curve) + 1)
    for name in CURVE_COLUMNS:
        if name in curve:
            curve[name] = pd.to_numeric(curve[name], errors="coerce")
    return curve


# ---------------------------------------------------------------- facts
def asha_rungs(experiment: dict[str, Any]) -> set[int]:
    """The epochs at which Ray's ASHA (one bracket) may stop a trial: grace_period *
    reduction_factor**k below max_t."""
    grace, factor = experiment.get("grace_period"), experiment.get("reduction_factor")
    max_t = experiment.get("max_t")
    if not all(isinstance(v, int | float) and v > 0 for v in (grace, factor, max_t)):
        return set()
    rungs, epoch = set(), float(grace)  # type: ignore[arg-type]
    while epoch < max_t and factor > 1:  # type: ignore[operator]
        rungs.add(int(epoch))
        epoch *= factor  # type: ignore[operator]
    return rungs


def cut_by_time(board: pd.DataFrame, experiment: dict[str, Any]) -> pd.Series:
    """Stopped trials that ASHA cannot have stopped, because they ended between its rungs (or
    before their first epoch): the search's time budget ended them. An empty experiment
    record names no rungs to tell them apart, so it marks none."""
    if not experiment:
        return pd.Series(False, index=board.index)
    if not experiment.get("asha", True):
        return board["status"] == "pruned"
    rungs = asha_rungs(experiment)
    epochs = board["epochs"].fillna(0).astype(int)
    return (board["status"] == "pruned") & ~epochs.isin(rungs)


def count_trials(board: pd.DataFrame, cut: pd.Series) -> dict[str, int]:
    """Trials by status; `cut` marks the "pruned" ones the time budget ended (cut_by_time)."""
    counts = {"trials": len(board)}
    counts.update({status: int((board["status"] == status).sum()) for status in STATUSES})
    counts["other"] = len(board) - sum(counts[status] for status in STATUSES)
    timed_out = int(cut.sum())
    counts["pruned"] -= timed_out
    counts["time_budget"] = timed_out
    return counts


def epoch_budget(
    board: pd.DataFrame,
    experiment: dict[str, Any],
    curves: dict[str, pd.DataFrame],
    cut: pd.Series,
) -> dict[str, Any]:
    """Epochs trained in all, against every trial running to max_t (what ASHA saved). Trials
    the time budget cut short (`cut`, as for count_trials) are left out of both: ASHA made no
    decision about them."""
    from_progress = board["trial_id"].map(lambda t: len(curves[t]) if t in curves else np.nan)
    epochs = board["epochs"].fillna(from_progress).fillna(0)
    decided = ~cut
    consumed, consumed_decided = int(epochs.sum()), int(epochs[decided].sum())
    max_t = experiment.get("max_t")
    budget = (
        int(decided.sum()) * int(max_t) if isinstance(max_t, int | float) and max_t > 0 else None
    )
    saved = 1 - consumed_decided / budget if budget else None
    return {
        "epochs_consumed": consumed,
        "epochs_consumed_decided": consumed_decided,
        "epochs_budget": budget,
        "epochs_saved_fraction": saved,
        "trials_decided": int(decided.sum()),
    }


def best_trial_id(board: pd.DataFrame, final: dict[str, Any] | None) -> str | None:
    """The final evaluation's best trial, else the leaderboard's top scored trial."""
    best = (final or {}).get("best")
    if isinstance(best, dict) and best.get("trial_id") not in (None, ""):
        return str(best["trial_id"])
    scored = board[board[METRIC].notna()]
    return str(scored["trial_id"].iloc[0]) if len(scored) else None


def param_importances(
    exp_dir: Path, experiment: dict[str, Any], counts: dict[str, int]
) -> tuple[dict[str, float] | None, str | None]:
    """Optuna (fANOVA) importances, or None and the reason they are not available."""
    db = exp_dir / "optuna.db"
    if not db.is_file():
        return None, "not available: no optuna.db in the results directory"
    if counts["completed"] + counts["pruned"] < 2:
        return None, "not available: fewer than 2 completed or pruned trials"
    try:
        values = optuna_importances(db, str(experiment.get("name", "")))
    except Exception as exc:  # optuna raises many kinds; the rest of the report still matters
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"not available: {type(exc).__name__}: {reason}".rstrip(": ")
    return values, None


def optuna_importances(db: Path, study_name: str) -> dict[str, float]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    storage = f"sqlite:///{db.resolve()}"
    names = optuna.get_all_study_names(storage)
    if study_name not in names and len(names) == 1:
        study_name = names[0]  # renamed experiment directory: the only study is the one
    study = optuna.load_study(study_name=study_name, storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A fixed seed keeps the forest, and so the numbers, the same on every rebuild.
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return dict(sorted(((k, float(v)) for k, v in values.items()), key=lambda kv: (-kv[1], kv[0])))


def collect_facts(exp_dir: Path, results: dict[str, Any], top: int) -> dict[str, Any]:
    """Everything the report states, JSON-ready: report.json is this, report.md renders it."""
    experiment, board, final = results["experiment"], results["leaderboard"], results["final"]
    # the counts and ASHA's epoch figures are the search's; a refit is stated apart
    is_refit = board["trial_id"].map(is_refit_id).astype(bool)
    searched = board[~is_refit]
    cut = cut_by_time(searched, experiment)
    counts = count_trials(searched, cut)
    importances, importances_note = param_importances(exp_dir, experiment, counts)
    return json_safe(
        {
            "experiment": experiment,
            "counts": counts,
            **epoch_budget(searched, experiment, results["curves"], cut),
            "refit_epochs": int(board.loc[is_refit, "epochs"].fillna(0).sum())
            if is_refit.any()
            else None,
            "leaderboard_rows": len(board),
            "best_trial_id": best_trial_id(board, final),
            "leaderboard_top": top,
            "leaderboard": board.head(top).to_dict("records"),
            # "pruned" trials ASHA never judged: they ended between its rungs
            "time_budget_trials": searched.loc[cut, "trial_id"].tolist(),
            "final": final,
            "importances": importances,
            "importances_note": importances_note,
            "notes": results["notes"],
        }
    )


def json_safe(value: Any) -> Any:
    """Plain Python values for json.dumps(allow_nan=False): NaN and inf become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


# ---------------------------------------------------------------- figures
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(curves: dict[str, pd.DataFrame], best_id: str | None, path: Path) -> Path:
    """val_acc and train_loss against epoch for every trial; the best trial in red, on top."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = (
        (axes[0], METRIC, 100.0, "val accuracy (%)"),
        (axes[1], "train_loss", 1.0, "train loss"),
    )
    for ax, column, scale, label in panels:
        if plot_trial_curves(ax, curves, column, scale, best_id):
            ax.legend(loc="best")
        else:
            ax.text(
                0.5,
                0.5,
                f"no {column} in any progress.csv",
                transform=ax.transAxes,
                ha="center",
                va="center",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"learning curves ({len(curves)} trials with progress)")
    return save_figure(fig, path)


def plot_trial_curves(
    ax, curves: dict[str, pd.DataFrame], column: str, scale: float, best_id: str | None
) -> int:
    """One line per trial that has `column`; returns how many were drawn."""
    drawn = others = 0
    for trial_id, curve in curves.items():
        if column not in curve or curve[column].notna().sum() == 0:
            continue
        best = trial_id == best_id
        others += not best
        # Markers on every line: a trial ASHA stopped after one epoch is a single point.
        label = f"best trial {trial_id}" if best else ("other trials" if others == 1 else None)
        ax.plot(
            curve["epoch"],
            curve[column] * scale,
            color="C3" if best else "C0",
            alpha=1.0 if best else 0.4,
            linewidth=2.2 if best else 1.0,
            zorder=3 if best else 2,
            marker="o",
            markersize=3.5 if best else 2.5,
            label=label,
        )
        drawn += 1
    return drawn


def plot_best_so_far(results: dict[str, Any], path: Path) -> Path:
    """The best val_acc reached so far against time, as a step curve over every epoch result."""
    plt = pyplot()
    experiment = results["experiment"]
    maximise = experiment.get("mode", MODE) != "min"
    points, xlabel = progress_times(results["curves"], experiment)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if points.empty:
        ax.text(0.5, 0.5, "no progress data", transform=ax.transAxes, ha="center", va="center")
    else:
        scale, unit = time_unit(float(points["t"].max()))
        best = points[METRIC].cummax() if maximise else points[METRIC].cummin()
        ax.scatter(
            points["t"] / scale,
            points[METRIC] * 100,
            s=10,
            alpha=0.3,
            color="C0",
            label="every epoch of every trial",
        )
        ax.step(
            points["t"] / scale,
            best * 100,
            where="post",
            color="C3",
            linewidth=2,
            label=f"best {METRIC} so far",
        )
        ax.legend(loc="best")
        ax.set_xlim(left=min(0.0, float(points["t"].min()) / scale))
        xlabel = f"{xlabel} ({unit})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(f"best {METRIC} so far: {experiment.get('name', '')}")
    return save_figure(fig, path)


def progress_times(
    curves: dict[str, pd.DataFrame], experiment: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """(t, val_acc) for every reported epoch, sorted by t, and what t measures."""
    frames = [c for c in curves.values() if METRIC in c]
    if frames and all("timestamp" in c and c["timestamp"].notna().all() for c in frames):
        rows = pd.concat([c.reindex(columns=["timestamp", "time_total_s", METRIC]) for c in frames])
        start = experiment_start(experiment, rows)
        t, label = rows["timestamp"] - start, "wall time since the experiment started"
    elif frames and all("time_total_s" in c for c in frames):
        rows = pd.concat([c[["time_total_s", METRIC]] for c in frames])
        t, label = rows["time_total_s"], "time within each trial (progress.csv has no timestamps)"
    else:
        return pd.DataFrame({"t": [], METRIC: []}), "time"
    points = pd.DataFrame({"t": t.to_numpy(), METRIC: rows[METRIC].to_numpy()}).dropna()
    return points.sort_values(["t", METRIC], kind="stable").reset_index(drop=True), label


def experiment_start(experiment: dict[str, Any], rows: pd.DataFrame) -> float:
    """Unix time the experiment started; the first trial's start when the ISO time is unusable."""
    trial_starts = rows["timestamp"] - rows["time_total_s"].fillna(0)
    earliest = float(trial_starts.min())
    try:
        started = datetime.fromisoformat(str(experiment.get("started"))).timestamp()
    except (TypeError, ValueError, OverflowError):
        return earliest
    return started if 0 <= earliest - started <= MAX_START_GAP_S else earliest


def time_unit(longest_s: float) -> tuple[float, str]:
    if longest_s > 2 * 3600:
        return 3600.0, "h"
    if longest_s > 600:
        return 60.0, "min"
    return 1.0, "s"


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- Markdown
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


def render_markdown(facts: dict[str, Any]) -> str:
    sections = (
        md_header(facts),
        md_leaderboard(facts),
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
        "```sh",
        str(exp.get("command", "(command not recorded)")),
        "```",
        "",
        f"- Data: {exp.get('data', '?')}",
        f"- Search space: {exp.get('space', '?')}",
        f"- Started {exp.get('started', '?')}, {finished}; "
        f"wall time {fmt_duration(exp.get('wall_time_s'))}",
        f"- Trials: {md_counts(counts)}",
        f"- Epochs: {md_epochs(facts)}",
        *md_refit(facts),
        f"- Selection metric: `{exp.get('metric', METRIC)}` ({exp.get('mode', MODE)}) on "
        "PublicTest (the val split); PrivateTest (test) is never used to select",
    ]
    return "\n".join(lines)


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
        score = f", best {METRIC} {fmt_pct(row[METRIC])}" if row else ""
        lines.append(
            f"- Refit: trial `{member.get('from_trial', '?')}`'s configuration trained again "
            f"from scratch for {member.get('epochs', '?')} epochs as `{member['id']}`"
            f"{score}{state}"
        )
    if len(members) > 1:
        lines.append(f"- These {len(members)} refits trained at the same time.")
    return lines


def md_counts(counts: dict[str, int]) -> str:
    text = (
        f"{counts['trials']} — {counts['completed']} completed, "
        f"{counts['pruned']} pruned by ASHA, {counts['failed']} failed"
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
    head = f"{consumed} trained"
    if timed_out:
        head += (
            f"; the {decided} trials that ran to max_t or were stopped by ASHA "
            f"trained {facts.get('epochs_consumed_decided', consumed)}"
        )
    text = f"{head} of {budget} possible ({decided} trials × {exp.get('max_t')} epochs)"
    if exp.get("asha", True) is False:
        return text + "; ASHA off"
    saved = facts["epochs_saved_fraction"]
    return (
        text + f"; ASHA saved {saved * 100:.1f} % "
        f"(grace period {exp.get('grace_period', '?')}, "
        f"reduction factor {exp.get('reduction_factor', '?')})"
    )


def table_params(facts: dict[str, Any]) -> list[str]:
    """Searched parameters for the Markdown table: most important first, at most a screen wide."""
    rows = facts["leaderboard"]
    params = [p for p in facts["experiment"].get("params") or [] if rows and p in rows[0]]
    order = list(facts["importances"] or {})
    params.sort(key=lambda p: order.index(p) if p in order else len(order))
    return params[:MAX_TABLE_PARAMS]


def md_leaderboard(facts: dict[str, Any]) -> str:
    rows, params, total = facts["leaderboard"], table_params(facts), facts["leaderboard_rows"]
    title = f"## Leaderboard (top {len(rows)} of {total}, best {METRIC} first)"
    if not rows:
        return f"{title}\n\nNo trials recorded."
    header = ["#", "trial", "status", "val acc", "val F1", "best epoch", "epochs", "time", *params]
    cut = set(facts.get("time_budget_trials") or ())
    body = [
        [
            str(i),
            f"`{r['trial_id']}`",
            "time budget" if r["trial_id"] in cut else r["status"] or "—",
            fmt_pct(r[METRIC]),
            fmt_num(r["val_f1"], 3),
            fmt_value(r["best_epoch"]),
            fmt_value(r["epochs"]),
            fmt_duration(r["time_s"]),
            *(fmt_value(r.get(p)) for p in params),
        ]
        for i, r in enumerate(rows, 1)
    ]
    table = md_table(header, "rllrrrrr" + "l" * len(params), body)
    hidden = len(facts["experiment"].get("params") or []) - len(params)
    more = f"\n\n{hidden} more parameters are in report.json." if hidden > 0 else ""
    return f"{title}\n\n{table}{more}"


FINAL_HEADER = [
    "model",
    "trials",
    "val acc (PublicTest, used to select)",
    "test acc (PrivateTest, used once)",
    "test acc, flip TTA (PrivateTest)",
    "test macro-F1 (PrivateTest)",
]


def md_final(facts: dict[str, Any]) -> str:
    final = facts["final"]
    if not final:
        return (
            "## Final evaluation\n\nNot run: no final.json (the search was interrupted or "
            "ran with --no-final-eval). Test accuracy is not reported."
        )
    best, ensemble = final.get("best") or {}, final.get("ensemble")
    rows = [final_row("best trial", [best.get("trial_id", "?")], best)]
    if ensemble:
        name = f"top-{ensemble.get('k', '?')} ensemble"
        rows.append(final_row(name, ensemble.get("trial_ids") or [], ensemble))
    lines = [
        "## Final evaluation",
        "",
        f"Selection rule: {final.get('selection', '(not recorded)')}",
        "",
        md_table(FINAL_HEADER, "llrrrr", rows),
    ]
    if best.get("checkpoint"):
        lines += ["", f"Best checkpoint: `{best['checkpoint']}`"]
    if best.get("config"):
        config = json.dumps(best["config"], indent=2, sort_keys=True)
        summary = "<details><summary>best trial's config</summary>"
        lines += ["", summary, "", "```json", config, "```", "", "</details>"]
    return "\n".join(lines)


def final_row(name: str, trial_ids: list[Any], numbers: dict[str, Any]) -> list[str]:
    return [
        name,
        ", ".join(f"`{t}`" for t in trial_ids),
        fmt_pct(numbers.get("val_acc")),
        fmt_pct(numbers.get("test_acc")),
        fmt_pct(numbers.get("test_acc_tta")),
        fmt_num(numbers.get("test_f1")),
    ]


def md_per_class(facts: dict[str, Any]) -> str:
    metrics = ((facts["final"] or {}).get("best") or {}).get("metrics") or {}
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return ""
    rows = [
        [
            md_cell(name),
            fmt_num(m.get("precision"), 3),
            fmt_num(m.get("recall"), 3),
            fmt_num(m.get("f1"), 3),
            fmt_value(m.get("support")),
        ]
        for name, m in per_class.items()
    ]
    table = md_table(["class", "precision", "recall", "F1", "support"], "lrrrr", rows)
    summary = (
        f"Accuracy {fmt_pct(metrics.get('accuracy'))}, macro-F1 {fmt_num(metrics.get('macro_f1'))}."
    )
    return f"## Best model per class (PrivateTest)\n\n{table}\n\n{summary}"


def md_importances(facts: dict[str, Any]) -> str:
    title = "## Parameter importances (Optuna, fANOVA)"
    values = facts["importances"]
    if not values:
        note = facts["importances_note"] or "not available"
        return f"{title}\n\n{note[0].upper()}{note[1:]}."
    rows = [[f"`{md_cell(name)}`", f"{value:.3f}"] for name, value in values.items()]
    return f"{title}\n\n{md_table(['parameter', 'importance'], 'lr', rows)}"


def md_figures(facts: dict[str, Any]) -> str:
    names = facts.get("figures") or []
    links = [f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in names]
    return "## Figures\n\n" + "\n\n".join(links) if links else ""


def md_notes(facts: dict[str, Any]) -> str:
    notes = facts["notes"]
    return "## Notes\n\n" + "\n".join(f"- {md_cell(n)}" for n in notes) if notes else ""


# ---------------------------------------------------------------- report
def build_report(exp_dir: Path | str, top: int = 10) -> Path:
    """Write report.md, report.json, learning_curves.png and best_so_far.png into exp_dir.

    Returns the path of report.md. Rebuilding overwrites only these four files.
    """
    if top < 1:
        raise UserError(f"the leaderboard needs at least one row, got {top=}")
    exp_dir = Path(exp_dir)
    results = load_results(exp_dir)
    facts = collect_facts(exp_dir, results, top)
    path = exp_dir / "report.md"
    try:
        plot_learning_curves(
            results["curves"], facts["best_trial_id"], exp_dir / "learning_curves.png"
        )
        plot_best_so_far(results, exp_dir / "best_so_far.png")
        facts["figures"] = [name for name in FIGURES if (exp_dir / name).is_file()]
        text = json.dumps(facts, indent=2, allow_nan=False)
        (exp_dir / "report.json").write_text(text + "\n")
        path.write_text(render_markdown(facts))
    except OSError as exc:
        raise UserError(
            f"cannot write the report into {str(exp_dir)!r}: {exc.strerror or exc}"
        ) from None
    return path
