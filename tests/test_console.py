"""The console during a search (fer_search/tuning/console.py): the formatting, driven with plain
rows and fake trials; the verbosity mapping; a resumed Tuner's console; and a real demo search
whose output goes to a file."""

from __future__ import annotations

import io
import re
import sys
from types import SimpleNamespace

from helpers import run_fer_search, tiny_space

from fer_search.tuning import console
from fer_search.tuning.console import ConsoleView, TrialRow

ANSI = re.compile(r"\x1b\[")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def row(label: str, status: str = "running", best: float | None = 0.5, **kw) -> TrialRow:
    return TrialRow(label, f"id{label}", {"model": "simple_cnn", "lr": 0.0031}, 5,
                    status=status, best=best, **kw)  # fmt: skip


def test_a_trial_ends_completed_pruned_or_failed_from_its_last_result():
    assert console.end_status({"epoch": 5}, 5, "ASHA") == ("completed", "")
    assert console.end_status({"epoch": 2}, 5, "ASHA") == ("pruned", "ASHA")
    assert console.end_status({"epoch": 2}, 5, "") == ("stopped", "")
    failed = {"epoch": 5, "failure": "loss is NaN at epoch 3"}
    assert console.end_status(failed, 5, "ASHA") == ("failed", "loss is NaN at epoch 3")


def test_status_words_in_the_table_and_the_lines():
    pruned = row("#3", "pruned", epoch=2, detail="ASHA")
    assert console.status_text(pruned) == "pruned at epoch 2 (ASHA)"
    assert "stopped by ASHA at epoch 2/5" in console.event_line("end", pruned, 65)
    budget = row("#4", "stopped", epoch=1, detail="time budget")
    assert console.status_text(budget) == "stopped (time budget)"
    assert "#4 stopped (time budget) at epoch 1/5" in console.event_line("end", budget, 0)
    failed = row("#5", "failed", detail="loss is NaN at epoch 3")
    assert console.event_line("end", failed, 0).endswith("#5 failed: loss is NaN at epoch 3")
    done = row("#6", "completed", epoch=5, best=0.612)
    assert console.event_line("end", done, 0).endswith("#6 completed 5/5 epochs, best 61.20 %")
    epoch = row("#3", epoch=2, val_acc=0.451, best=0.451)
    assert console.event_line("epoch", epoch, 125) == (
        "[2:05] #3 epoch 2/5 val_acc 45.10 % best 45.10 %"
    )
    assert console.error_reason("Traceback...\n  File x\nRuntimeError: boom\n\n") == (
        "RuntimeError: boom"
    )


def test_a_long_table_keeps_the_running_trials_and_the_best():
    rows = [row(f"#{i}", "pruned", best=0.1 + i / 100, epoch=1, detail="ASHA") for i in range(20)]
    rows[3].status = rows[11].status = "running"
    rows[7].best = 0.9
    lines = console.table_lines("search", rows, ["model", "lr"], 30, 61.0, (120, 10))
    assert len(lines) == 9 and lines[-1] == "… and 14 more finished"  # a line for the cursor
    shown = [line.split()[0] for line in lines[2:-1]]
    assert {"#3", "#11", "#7"} <= set(shown) and "#19" in shown  # running, then the best
    assert lines[0].startswith("search 1:01  trials 20/30 started, 2 running  best #7 90.00 %")
    assert "3.1e-03" in lines[1 + shown.index("#3") + 1]
    fits = console.table_lines("search", rows[:2], ["model", "lr"], 2, 0.0, (75, 40))
    assert "lr" not in fits[1].split() and fits[2].endswith("pruned at epoch 1 (ASHA)")
    narrow = console.table_lines("search", rows[:2], ["model", "lr"], 2, 0.0, (30, 40))
    assert all(len(line) < 30 for line in narrow)  # never wraps: the redraw counts lines


def test_64_trials_at_once_stay_a_block_of_the_best_running_and_finished():
    finished = [row(f"#{i}", "completed", best=0.3 + i / 1000, epoch=5) for i in range(100)]
    running = [row(f"#{100 + i}", best=None if i % 2 else 0.2 + i / 1000, epoch=i % 5)
               for i in range(64)]  # fmt: skip
    for height in (24, 80, 200):  # a tall terminal shows no more
        lines = console.table_lines("search", finished + running, ["model", "lr"], 200, 0.0,
                                    (120, height))  # fmt: skip
        assert len(lines) <= min(console.MAX_ROWS, height - 3) + 2, height
        assert lines[0].endswith("164/200 started, 64 running  best #99 39.90 %")
    shown = [line.split()[0] for line in lines[2:-1]]
    assert shown[:4] == ["#96", "#97", "#98", "#99"]  # the best finished ones, then running
    assert {"#162", "#160", "#158"} <= set(shown[4:])  # the running trials doing best
    assert lines[-1] == "… and 49 more running, 96 more finished"


def test_simulated_trials_are_named_in_the_header_and_the_lines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "40")
    simulated = {"epoch": 1, "val_acc": 0.3, "best_val_acc": 0.3, "precision": "simulated"}
    for out in (Terminal(), io.StringIO()):
        view = ConsoleView("search", 2, ["model", "lr"], stream=out)
        trial = fake_trial("a_00000", 0)
        view.on_trial_start(1, [trial], trial)
        view.on_trial_result(2, [trial], trial, {**simulated, "epoch": 1})
        view.on_trial_result(3, [trial], trial, {**simulated, "epoch": 2})
        view.on_experiment_end([trial])
        text = out.getvalue()
        if isinstance(out, Terminal):
            assert text.rsplit("\x1b[J", 1)[1].startswith("search (simulated) ")
        else:
            assert text.count("simulated") == 1 and "no model is trained" in text


def fake_trial(trial_id: str, number: int, last: dict | None = None) -> SimpleNamespace:
    config = {"trial_number": number, "model": "simple_cnn", "lr": 0.01, "epochs": 3}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=last or {},
                           status="RUNNING", error_file=None)  # fmt: skip


def drive(view: ConsoleView) -> None:
    a, b = fake_trial("a_00000", 0), fake_trial("b_00001", 1)
    view.on_trial_start(1, [a], a)
    view.on_trial_start(2, [a, b], b)
    for epoch in (1, 2, 3):
        a.last_result = {"epoch": epoch, "val_acc": 0.3 + epoch / 10, "best_val_acc": 0.6}
        view.on_trial_result(3, [a, b], a, a.last_result)
    view.on_trial_complete(4, [a, b], a)
    b.last_result = {"epoch": 1, "val_acc": 0.2, "best_val_acc": 0.2}
    view.on_trial_result(5, [a, b], b, b.last_result)
    view.on_experiment_end([a, b])  # b never completed: the time budget ended it


def test_lines_when_the_output_is_not_a_terminal():
    out = io.StringIO()
    view = ConsoleView("search", 2, ["model", "lr"], scheduler="ASHA", budget_s=60, stream=out)
    view.start -= 60  # the search's time budget is spent
    drive(view)
    lines = out.getvalue().splitlines()
    assert not ANSI.search(out.getvalue())
    assert [line.split(" ", 2)[1:] for line in lines][:2] == [
        ["#0", "started a_00000: model=simple_cnn lr=0.01"],
        ["#1", "started b_00001: model=simple_cnn lr=0.01"],
    ]
    assert lines[4].endswith("#0 epoch 3/3 val_acc 60.00 % best 60.00 %")
    assert lines[5].endswith("#0 completed 3/3 epochs, best 60.00 %")
    assert lines[-1].endswith("#1 stopped (time budget) at epoch 1/3, best 20.00 %")


def test_refit_rows_are_named_after_the_refit_and_the_trial_they_retrain():
    members = [
        {"id": "refit", "from_trial": "aaa", "epochs": 9, "config": {"lr": 0.1}},
        {"id": "refit2", "from_trial": "bbb", "epochs": 7, "config": {"lr": 0.2}},
    ]
    out = io.StringIO()
    view = ConsoleView("refit", 2, ["model", "lr"], members=members, stream=out)
    trial = SimpleNamespace(trial_id="r_00001", config={"refit_member": 1}, last_result={})
    view.on_trial_start(1, [trial], trial)
    assert out.getvalue().endswith("] refit2 started from bbb: lr=0.2\n")
    assert view.rows["r_00001"].max_t == 7


def test_the_live_table_redraws_over_the_previous_one(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "40")
    out = Terminal()
    view = ConsoleView("search", 2, ["model", "lr"], scheduler="ASHA", stream=out)
    trial = fake_trial("a_00000", 0)
    view.on_trial_start(1, [trial], trial)
    first = out.getvalue()
    assert first.startswith("\r\x1b[J") and first.count("\n") == 3  # header, names, one row
    view.on_trial_complete(2, [trial], trial)  # an end always redraws
    second = out.getvalue()[len(first) :]
    assert second.startswith("\r\x1b[3A\x1b[J")
    assert "pruned at epoch 0 (ASHA)" in second


def test_what_others_print_goes_above_the_live_table(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    terminal, log = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setattr("sys.stderr", log)  # not a terminal: left alone
    view = ConsoleView("search", 1, ["model"])
    trial = fake_trial("a_00000", 0)
    view.on_trial_start(1, [trial], trial)
    print("(run_trial pid=1) a worker's line")  # Ray forwards worker logs to sys.stdout
    view.dirty, view.drawn_at = True, 0.0
    view.on_step_end(2, [trial])
    view.on_experiment_end([trial])
    assert sys.stdout is terminal and sys.stderr is log
    tables = terminal.getvalue().split("(run_trial pid=1) a worker's line\n")
    assert tables[0].endswith("\r\x1b[3A\x1b[J")  # the table erased before the line
    assert tables[1].startswith("\r\x1b[J") and "#0" in tables[1]  # redrawn below it


def test_verbose_maps_to_ray_verbosity_and_our_view():
    assert [console.ray_verbosity(v) for v in (0, 1, 2, 3)] == [0, 0, 1, 2]
    space = SimpleNamespace(params=[])
    assert console.console_callbacks(0, "search", space, 4) == []
    (ours,) = console.console_callbacks(1, "search", space, 4)
    assert ours.live is None  # a table on a terminal, lines elsewhere
    (ours,) = console.console_callbacks(2, "search", space, 4)
    assert ours.live is False  # Ray prints too: a redrawn table would erase its lines


def test_a_restored_tuner_gets_this_runs_console(tmp_path):
    """Tune pickles the RunConfig (with the view) and restores it; a resume replaces it."""
    from ray import tune

    from fer_search.tuning._ray_compat import restored_run_config

    def trainable(config):
        pass

    started = ConsoleView("search", 2, ["model"], stream=Terminal())  # pickles without it
    run_config = tune.RunConfig(name="r", storage_path=str(tmp_path), callbacks=[started])
    tune.Tuner(trainable, run_config=run_config)
    tuner = tune.Tuner.restore(str(tmp_path / "r"), trainable=trainable)
    (pickled,) = restored_run_config(tuner).callbacks
    assert isinstance(pickled, ConsoleView) and pickled.stream is None
    fresh = console.console_callbacks(3, "search", SimpleNamespace(params=[]), 2)
    console.console_on_restore(tuner, fresh, 3)
    assert restored_run_config(tuner).callbacks == fresh
    assert restored_run_config(tuner).verbose == 2


def test_a_search_into_a_file_prints_a_line_per_trial_event_and_no_ray_table(tmp_path):
    """Trial 1 diverges (a deterministic failure); the others complete or are pruned."""
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space("tiny", trials=3, epochs=2))
    args = ["--space", str(space), "--data", "demo", "--demo-size", "0.25", "--no-final-eval",
            "--storage", str(tmp_path / "results"), "--name", "console"]  # fmt: skip
    proc = run_fer_search(*args, env={"FER_SEARCH_FAULT": "nan:trial=1"}, drop_env=["RAY_"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert not ANSI.search(out) and "Trial status" not in out and "== Status ==" not in out
    assert "Configuration for experiment" not in out
    for number in (0, 1, 2):
        assert len(re.findall(rf"^\[\d+:\d\d\] #{number} started ", out, re.M)) == 1, out
        ends = re.findall(rf"^\[\d+:\d\d\] #{number} (completed|stopped|failed)", out, re.M)
        assert len(ends) == 1, out
    assert re.search(r"#1 failed: .*(nan|NaN|non-finite)", out), out
    assert re.search(r"#0 epoch 1/2 val_acc \d+\.\d\d % best", out), out


def test_a_trial_hyperband_paused_is_resumed_not_started_again():
    out = io.StringIO()
    view = ConsoleView("search", 1, ["model", "lr"], scheduler="HyperBand", stream=out)
    trial = SimpleNamespace(trial_id="a", config={"trial_number": 0, "epochs": 4}, status="RUNNING")
    view.on_trial_start(1, [trial], trial)
    view.on_trial_result(2, [trial], trial, {"epoch": 2, "val_acc": 0.3, "best_val_acc": 0.3})
    view.on_trial_start(3, [trial], trial)  # Tune starts it again after the pause
    lines = out.getvalue().splitlines()
    assert "#0 started a" in lines[0] and "#0 resumed after epoch 2/4" in lines[-1]
