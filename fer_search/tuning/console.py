"""The console during a search: one row per trial, as a Ray Tune callback in the driver.

On a terminal, a table redrawn in place (at most twice a second, always when a trial starts
or ends) under a header line (elapsed time, trials started, running, best so far); elsewhere
(a file, a pipe, CI) one short line per trial event and no ANSI codes. `--verbose` 1 shows
only this view; 0 shows nothing; 2 and 3 add Ray's own output at its verbosity 1 and 2 (then
this view prints lines, as a table redrawn in place would erase Ray's lines).

The formatting (rows -> lines) is plain functions of plain data; `ConsoleView` only collects
the rows from Tune's events and writes what they return.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, cast

from ray.tune import Callback

from fer_search.tuning.simulated import SIMULATED_PRECISION

if TYPE_CHECKING:
    from fer_search.space import SearchSpace

__all__ = [
    "ConsoleView",
    "TrialRow",
    "console_callbacks",
    "console_on_restore",
    "end_status",
    "event_line",
    "ray_verbosity",
    "redraw",
    "table_lines",
]

RUNNING, COMPLETED, PRUNED, FAILED, ERROR, STOPPED, RETRYING = (
    "running", "completed", "pruned", "failed", "error", "stopped", "retrying"
)  # fmt: skip
MAX_SETTINGS = 4  # sampled settings shown beside the model
STATUS_ROOM = 24  # the status column's width before settings columns give way
REDRAW_S = 0.5  # the live table is redrawn at most this often (and on each start and end)
MAX_ROWS = 20  # trial rows in the live table however tall the terminal (64 at once stay readable)
FINISHED_ROWS = 4  # of them, kept for the best finished trials while more are running
SIMULATED_LINE = "the trials are simulated (SimulatedTrainer): no model is trained"
CLEAR_BELOW = "\x1b[J"


def cursor_up(lines: int) -> str:
    """ANSI: to the first column, `lines` lines up."""
    return f"\r\x1b[{lines}A" if lines else "\r"


@dataclass
class TrialRow:
    """What the console knows of one trial."""

    label: str  # "#3" (Optuna trial number), or a refit's id ("refit2")
    trial_id: str  # Ray's trial id; for a refit, "from <the trial it retrains>"
    settings: dict[str, Any]
    max_t: int
    epoch: int = 0
    val_acc: float | None = None
    best: float | None = None
    status: str = RUNNING
    detail: str = ""  # a failure's reason, what stopped it


# ---------------------------------------------------------------- words and numbers
def ray_verbosity(verbose: int) -> int:
    """Ray Tune's own verbosity for fer-search's --verbose: 0 and 1 -> 0, 2 -> 1, 3 -> 2."""
    return min(2, max(0, verbose - 1))


def number(value: Any) -> str:
    """A setting's value, short: 0.0031 -> 3.1e-03, 0.125 -> 0.125, 16 -> 16."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1e}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3g}"
    text = str(int(value)) if isinstance(value, float) else str(value)
    return text if len(text) <= 14 else text[:13] + "…"


def percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f} %"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def end_status(last: dict[str, Any] | None, max_t: int, scheduler: str) -> tuple[str, str]:
    """(status, detail) of a trial Tune completed, from its last result: the trainable's
    `failure` (a deterministic failure), all its epochs (completed), or fewer (the scheduler
    stopped it: pruned by ASHA, or stopped)."""
    last = last or {}
    if last.get("failure"):
        return FAILED, str(last["failure"])
    epoch = int(last.get("epoch", 0) or 0)
    if epoch >= max_t:
        return COMPLETED, ""
    return (PRUNED, scheduler) if scheduler else (STOPPED, "")


def error_reason(text: str) -> str:
    """A Tune error file (a traceback) -> its last line, the exception."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def status_text(row: TrialRow, limit: int = 40) -> str:
    """The table's status cell."""
    if row.status == PRUNED:
        return f"pruned at epoch {row.epoch} ({row.detail})"
    if row.status == STOPPED:
        return f"stopped ({row.detail})" if row.detail else f"stopped at epoch {row.epoch}"
    if row.status in (FAILED, ERROR, RETRYING) and row.detail:
        return shorten(f"{row.status}: {row.detail}", limit)
    return row.status


def settings_text(settings: dict[str, Any]) -> str:
    return " ".join(f"{name}={number(value)}" for name, value in settings.items())


def event_line(event: str, row: TrialRow, elapsed: float) -> str:
    """One line of the non-terminal view: `started`, `epoch` or `end` of `row`."""
    if event == "started":
        what = f"started {row.trial_id}: {settings_text(row.settings)}"
    elif event == "resumed":  # after a pause (HyperBand), from its checkpoint
        what = f"resumed after epoch {row.epoch}/{row.max_t}"
    elif event == "epoch":
        what = (
            f"epoch {row.epoch}/{row.max_t} val_acc {percent(row.val_acc)} best {percent(row.best)}"
        )
    elif row.status == COMPLETED:
        what = f"completed {row.epoch}/{row.max_t} epochs, best {percent(row.best)}"
    elif row.status == PRUNED:
        what = f"stopped by {row.detail} at epoch {row.epoch}/{row.max_t}, best {percent(row.best)}"
    elif row.status == STOPPED:
        why = f" ({row.detail})" if row.detail else ""
        what = f"stopped{why} at epoch {row.epoch}/{row.max_t}, best {percent(row.best)}"
    else:
        what = status_text(row, limit=100)
    return f"[{clock(elapsed)}] {row.label} {what}"


# ---------------------------------------------------------------- the live table
def best_row(rows: list[TrialRow]) -> TrialRow | None:
    scored = [r for r in rows if r.best is not None and not math.isnan(r.best)]
    return max(scored, key=lambda r: r.best or 0.0) if scored else None


def header_line(title: str, rows: list[TrialRow], total: int, elapsed: float) -> str:
    running = sum(r.status in (RUNNING, RETRYING) for r in rows)
    best = best_row(rows)
    so_far = f"best {best.label} {percent(best.best)}" if best else "no result yet"
    return (
        f"{title} {clock(elapsed)}  trials {len(rows)}/{total} started, {running} running  {so_far}"
    )


def visible_rows(rows: list[TrialRow], limit: int) -> tuple[list[TrialRow], int, int]:
    """At most `limit` rows, the last line being "… and N more" when some are hidden: up to
    FINISHED_ROWS of the best finished trials, then the running ones (those with the best
    results so far first, then the latest started), then more of the best finished; in their
    starting order. Also how many running and finished trials are hidden."""
    if len(rows) <= limit:
        return rows, 0, 0
    room = max(1, limit - 1)
    running = [r for r in rows if r.status in (RUNNING, RETRYING)]
    finished = [r for r in rows if r.status not in (RUNNING, RETRYING)]
    finished.sort(key=lambda r: -(r.best or -1.0))
    order = {id(r): i for i, r in enumerate(rows)}
    running.sort(key=lambda r: (-(r.best if r.best is not None else -1.0), -order[id(r)]))
    kept_running = running[: room - min(FINISHED_ROWS, room // 4, len(finished))]
    kept_finished = finished[: room - len(kept_running)]
    keep = {id(r) for r in kept_running + kept_finished}
    shown = [r for r in rows if id(r) in keep]
    return shown, len(running) - len(kept_running), len(finished) - len(kept_finished)


def hidden_line(running: int, finished: int) -> str:
    parts = [f"{n} more {what}" for n, what in ((running, "running"), (finished, "finished")) if n]
    return "… and " + ", ".join(parts)


def row_cells(row: TrialRow, columns: list[str]) -> list[str]:
    values = [number(row.settings[c]) if c in row.settings else "" for c in columns]
    acc, best = (percent(x).removesuffix(" %") for x in (row.val_acc, row.best))
    return [row.label, row.trial_id, *values, f"{row.epoch}/{row.max_t}", acc, best,
            status_text(row)]  # fmt: skip


def aligned(cells: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in cells]  # fmt: skip


def table_lines(
    title: str,
    rows: list[TrialRow],
    columns: list[str],
    total: int,
    elapsed: float,
    size: tuple[int, int],
) -> list[str]:
    """The live view for a terminal of `size` (columns, lines): the header line, the column
    names and a row per trial, at most MAX_ROWS of them (visible_rows) however many run; cut
    to fit: settings while the status has too little room, then the rows, then the lines
    themselves (a wrapped line would throw the redraw's count out)."""
    width, height = size
    shown, hidden_running, hidden_finished = visible_rows(rows, min(MAX_ROWS, max(3, height - 3)))
    # settings give way to a status like "pruned at epoch 2 (ASHA)": first those that are the
    # same in every row (they tell the rows nothing apart), then from the right
    same = [c for c in columns if len({number(r.settings.get(c, "")) for r in rows}) == 1]
    order = [*reversed(same), *(c for c in reversed(columns) if c not in same)]
    for dropped in range(len(columns) + 1):
        kept = [c for c in columns if c not in order[:dropped]]
        names = ["trial", "id", *kept, "epoch", "val_acc", "best", "status"]
        body = aligned([names, *(row_cells(r, kept) for r in shown)])
        if body[0].index("status") + STATUS_ROOM < width:
            break
    lines = [header_line(title, rows, total, elapsed), *body]
    if hidden_running or hidden_finished:
        lines.append(hidden_line(hidden_running, hidden_finished))
    return [line if len(line) < width else line[: max(1, width - 2)] + "…" for line in lines]


def redraw(previous_height: int, lines: list[str]) -> str:
    """What replaces a table of `previous_height` lines (the cursor below it) by `lines`."""
    return cursor_up(previous_height) + CLEAR_BELOW + "".join(f"{line}\n" for line in lines)


# ---------------------------------------------------------------- the callback
class Interleaved:
    """sys.stdout or sys.stderr while the live table is up: what others write there (Ray's
    worker logs) erases the table first, so it lands above the table, redrawn below it."""

    def __init__(self, stream: TextIO, view: ConsoleView) -> None:
        self.stream, self.view = stream, view

    def write(self, text: str) -> int:
        if text and self.view.height:
            self.view.erase()
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def display_columns(space: SearchSpace) -> list[str]:
    """The model and up to MAX_SETTINGS of the settings the space samples, in its order."""
    sampled = [p.name.partition("@")[0] for p in space.params if p.kind != "fixed"]
    return list(dict.fromkeys(["model", *sampled]))[: 1 + MAX_SETTINGS]


class ConsoleView(Callback):
    """Tune's trial events -> TrialRows -> the console (`stream`, default sys.stdout): a table
    redrawn in place on a terminal (`live` None: when the stream is one), else lines.

    `members`: a refit's configurations (refit_members), which name its trials' rows."""

    def __init__(
        self,
        title: str,
        total: int,
        columns: list[str],
        *,
        scheduler: str = "",
        budget_s: float | None = None,
        members: list[dict[str, Any]] | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.title, self.total, self.columns = title, total, columns
        self.scheduler, self.budget_s, self.members = scheduler, budget_s, members
        self.stream, self.live = stream, live
        self.rows: dict[str, TrialRow] = {}
        self.start = time.time()
        self.height = 0  # lines of the table last drawn
        self.drawn_at = 0.0
        self.dirty = False
        self.adopted = False
        self.simulated = False  # a trial reported simulated results (tuning.simulated)
        self.saved: tuple[Any, Any] | None = None  # sys.stdout and sys.stderr, while live

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its RunConfig (tuner.pkl); a stream does not pickle
        return {**self.__dict__, "stream": None, "saved": None}

    # -------------------------------------------------- output
    def out(self) -> TextIO:
        return self.stream or (self.saved[0] if self.saved else sys.stdout)

    def interleave(self, on: bool) -> None:
        """Route others' writes to this terminal through Interleaved (on), or stop (off)."""
        if on and self.saved is None and self.stream is None:
            self.saved = sys.stdout, sys.stderr
            sys.stdout = cast(TextIO, Interleaved(sys.stdout, self))
            if sys.stderr.isatty():
                sys.stderr = cast(TextIO, Interleaved(sys.stderr, self))
        elif not on and self.saved is not None:
            sys.stdout, sys.stderr = self.saved
            self.saved = None

    def erase(self) -> None:
        self.out().write(cursor_up(self.height) + CLEAR_BELOW)
        self.out().flush()
        self.height, self.dirty = 0, True

    def is_live(self) -> bool:
        if self.live is None:
            self.live = bool(getattr(self.out(), "isatty", lambda: False)())
        return self.live

    def elapsed(self) -> float:
        return time.time() - self.start

    def say(self, event: str, row: TrialRow) -> None:
        if self.is_live():
            self.draw(force=event != "epoch")
        else:
            self.out().write(event_line(event, row, self.elapsed()) + "\n")
            self.out().flush()

    def draw(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.drawn_at < REDRAW_S:
            self.dirty = True
            return
        size = tuple(shutil.get_terminal_size())
        title = f"{self.title} ({SIMULATED_PRECISION})" if self.simulated else self.title
        lines = table_lines(title, list(self.rows.values()), self.columns, self.total,
                            self.elapsed(), (size[0], size[1]))  # fmt: skip
        self.interleave(True)
        self.out().write(redraw(self.height, lines))
        self.out().flush()
        self.height, self.drawn_at, self.dirty = len(lines), now, False

    # -------------------------------------------------- rows
    def new_row(self, trial: Any) -> TrialRow:
        config = trial.config or {}
        if self.members is not None:
            from fer_search.tuning.trainable import REFIT_MEMBER

            member = self.members[int(config.get(REFIT_MEMBER, 0))]
            config = {**member["config"], "epochs": member["epochs"]}
            label, trial_id = str(member["id"]), f"from {member['from_trial']}"
        else:
            number_ = config.get("trial_number")
            label, trial_id = (f"#{number_}" if number_ is not None else "?"), trial.trial_id
        settings = {c: config[c] for c in self.columns if c in config}
        return TrialRow(label, trial_id, settings, int(config.get("epochs", 0)))

    def row(self, trial: Any) -> TrialRow:
        if trial.trial_id not in self.rows:
            self.rows[trial.trial_id] = self.new_row(trial)
        return self.rows[trial.trial_id]

    def update(self, row: TrialRow, result: dict[str, Any] | None) -> None:
        if not result or result.get("failure"):
            return
        if result.get("precision") == SIMULATED_PRECISION and not self.simulated:
            self.simulated = True
            if not self.is_live():
                self.out().write(f"[{clock(self.elapsed())}] {SIMULATED_LINE}\n")
        row.epoch = int(result.get("epoch", row.epoch) or 0)
        row.max_t = int(result.get("max_epochs", row.max_t) or row.max_t)
        row.val_acc = result.get("val_acc", row.val_acc)
        row.best = result.get("best_val_acc", row.best)

    # -------------------------------------------------- Tune's events (in the driver)
    def setup(self, *args: Any, **info: Any) -> None:
        self.start = time.time()  # the run's start, as its time budget counts

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if not self.adopted:  # a resumed run: the trials that ended before it, as they ended
            self.adopted = True
            for trial in trials:
                if trial.trial_id not in self.rows and trial.status in ("TERMINATED", "ERROR"):
                    self.finish(self.row(trial), trial, trial.status == "ERROR", quiet=True)
        if self.is_live() and (self.dirty or time.time() - self.drawn_at >= 1.0) and self.rows:
            self.draw()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self.row(trial)
        row.status = RUNNING
        self.say("resumed" if row.epoch else "started", row)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        row = self.row(trial)
        self.update(row, result)
        if not result.get("failure"):
            self.say("epoch", row)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self.row(trial)
        row.status, row.detail = RETRYING, read_error(trial)
        self.say("end", row)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.finish(self.row(trial), trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.finish(self.row(trial), trial, error=True)

    def finish(self, row: TrialRow, trial: Any, error: bool, quiet: bool = False) -> None:
        self.update(row, trial.last_result)
        if error:
            row.status, row.detail = ERROR, read_error(trial)
        else:
            row.status, row.detail = end_status(trial.last_result, row.max_t, self.scheduler)
        if not quiet:
            self.say("end", row)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Trials still running when the run ends were stopped by the time budget (or the run
        was interrupted): Tune does not complete them."""
        spent = self.budget_s is not None and self.elapsed() >= 0.95 * self.budget_s
        for row in self.rows.values():
            if row.status in (RUNNING, RETRYING):
                row.status, row.detail = STOPPED, "time budget" if spent else "interrupted"
                if not self.is_live():
                    self.say("end", row)
        if self.is_live() and self.rows:
            self.draw(force=True)
        self.interleave(False)


def read_error(trial: Any) -> str:
    try:
        with open(trial.error_file) as f:
            return error_reason(f.read())
    except (OSError, TypeError):
        return ""


def console_callbacks(
    verbose: int, title: str, space: SearchSpace, total: int, **view: Any
) -> list[Callback]:
    """The console view a run's RunConfig gets: none at --verbose 0; lines, not a table redrawn
    in place, when Ray prints too (--verbose 2 and 3)."""
    if verbose <= 0:
        return []
    live = None if verbose == 1 else False
    return [ConsoleView(title, total, display_columns(space), live=live, **view)]


def console_on_restore(tuner: Any, callbacks: list[Any], verbose: int) -> Any:
    """A restored Tuner runs with the RunConfig its run started with (Tune pickles it), so
    with that run's --verbose and a console view with no rows; give it this run's."""
    from fer_search.tuning._ray_compat import restored_run_config

    run_config = restored_run_config(tuner)
    if run_config is not None:  # None through ray://: the pickled one stays
        run_config.callbacks, run_config.verbose = callbacks, ray_verbosity(verbose)
    return tuner
