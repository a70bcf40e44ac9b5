"""Screenshots of a finished experiment in the two viewers the README opens: TensorBoard (HParams
table and parallel coordinates, Time Series with its run list) and optuna-dashboard (study list,
study page, Trials tab, Analytics), taken by headless Chromium, the distribution's package, driven
by Playwright (pip install playwright; no browser is downloaded). Beside the PNGs, views.json
holds what the pages' own HTTP APIs answered, so a picture can be checked against numbers.

    python benchmarks/views.py results/latency [--out /tmp/views/latency] [--wait 8]

Both servers are bound to 127.0.0.1 on free ports and stopped at the end, also on error.
optuna-dashboard opens a copy of optuna.db, so the experiment directory is only read."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.bench.viewers import (
    SESSION_GROUPS_REQUEST,
    ask,
    executable,
    free_port,
    server,
    until,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

Action = Callable[["Page"], None]
WIDTH, HEIGHT = 2200, 2000  # TensorBoard scrolls inside the page: make it tall
HPARAMS = "/data/plugin/hparams"
COSTS = ("latency", "params", "flops")  # does a cost of a multi-objective search show anywhere?


def chromium_or_exit(path: str | None) -> str:
    """The browser, or one line saying what is missing and how to get it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise SystemExit("views.py: playwright is not installed (pip install playwright)") from None
    found = path or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None or not Path(found).is_file():
        raise SystemExit(f"views.py: no Chromium at {found or 'PATH'} (apt-get install chromium)")
    return found


def tensorboard_facts(port: int) -> dict[str, Any]:
    """The HParams experiment and session groups, the run list and every scalar tag."""
    experiment = json.loads(ask(port, f"{HPARAMS}/experiment", {"experimentName": ""}))
    groups = json.loads(ask(port, f"{HPARAMS}/session_groups", SESSION_GROUPS_REQUEST))
    tags = json.loads(ask(port, "/data/plugin/scalars/tags"))
    runs = json.loads(ask(port, "/data/runs"))
    hparams = [
        {
            key: info[key]
            for key in ("name", "type", "domainInterval", "domainDiscrete")
            if key in info
        }
        for info in experiment.get("hparamInfos", [])
    ]
    metrics = [
        {"tag": info["name"]["tag"], "display_name": info.get("displayName", "")}
        for info in experiment.get("metricInfos", [])
    ]
    sessions = [s for g in groups.get("sessionGroups", []) for s in g["sessions"]]
    scalar_tags = sorted({tag for run_tags in tags.values() for tag in run_tags})
    names = [h["name"] for h in hparams] + [m["tag"] for m in metrics] + scalar_tags
    return {
        "hparams": hparams,
        "metrics": metrics,
        "session_groups": groups.get("totalSize"),
        "session_statuses": dict(Counter(s["status"] for s in sessions)),
        "status_hparam": dict(
            Counter(str(g["hparams"].get("status")) for g in groups.get("sessionGroups", []))
        ),
        "runs": runs,
        "run_dot_listed": "." in runs,
        "scalar_tags": scalar_tags,
        "cost_names": [n for n in names if any(cost in n for cost in COSTS)],
    }


def attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


def trial_facts(trial: dict[str, Any]) -> dict[str, Any]:
    return {"number": trial["number"], "values": trial.get("values"),
            "user_attrs": attrs(trial["user_attrs"])}  # fmt: skip


def dashboard_facts(port: int) -> dict[str, Any]:
    """/api/studies and, for each study, /api/studies/<id> and its parameter importances."""
    facts: dict[str, Any] = {"studies": []}
    for summary in json.loads(ask(port, "/api/studies"))["study_summaries"]:
        study_id = summary["study_id"]
        study = json.loads(ask(port, f"/api/studies/{study_id}?after=0"))
        trials = study["trials"]
        try:
            importances = json.loads(ask(port, f"/api/studies/{study_id}/param_importances"))
        except ConnectionError as error:  # HTTP 400 when it cannot compute them
            importances = {"param_importances": str(error)}
        facts["studies"].append({
            "id": study_id,
            "name": summary["study_name"],
            "directions": study["directions"],
            "objective_names": study.get("objective_names"),
            "user_attrs": attrs(summary["user_attrs"]),
            "trials": len(trials),
            "states": dict(Counter(t["state"] for t in trials)),
            "best_trials": [trial_facts(t) for t in study["best_trials"]],
            "constraints": {t["number"]: t["constraints"] for t in trials if t["constraints"]},
            "union_user_attrs": [a["key"] for a in study["union_user_attrs"]],
            "param_importances": importances["param_importances"],
        })  # fmt: skip
    return facts


def click(text: str) -> Action:
    """Click the first element showing `text` (Playwright's locators reach into TensorBoard's
    shadow DOM)."""
    return lambda page: page.get_by_text(text, exact=False).first.click()


def tick(names: list[str], defaults: dict[str, bool]) -> Action:
    """Note every checkbox's default state in `defaults`, then tick the unticked `names`."""

    def action(page: Page) -> None:
        for box in page.get_by_role("checkbox").all():
            if label := box.inner_text().strip():
                defaults[label] = box.get_attribute("aria-checked") == "true"
        for name in names:
            if defaults.get(name) is False:
                page.get_by_role("checkbox", name=name, exact=True).first.click()
        if names:  # the table scrolls sideways inside the page: widen it to show every column
            page.set_viewport_size({"width": WIDTH * 3 // 2, "height": HEIGHT})

    return action


def shoot(
    chromium: str, shots: list[tuple[str, str, Action | None]], out: Path, wait_s: float
) -> list[str]:
    """Open each (name, url, action) in a fresh page, wait for its JS, screenshot the full page."""
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            for name, url, action in shots:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.goto(url, wait_until="load")
                page.wait_for_timeout(wait_s * 1000)
                if action is not None:
                    action(page)
                    page.wait_for_timeout(wait_s * 1000 / 2)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                page.close()
                written.append(f"{name}.png")
        finally:
            browser.close()
    return written


def views(experiment: Path, out: Path, chromium: str, wait_s: float) -> dict[str, Any]:
    logdir, db = experiment / "tensorboard", experiment / "optuna.db"
    for needed in (logdir, db):
        if not needed.exists():
            raise SystemExit(f"views.py: {needed} does not exist (is {experiment} an experiment?)")
    out.mkdir(parents=True, exist_ok=True)
    tb, od = free_port(), free_port()
    while od == tb:
        od = free_port()
    with ExitStack() as stack:
        copy = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "optuna.db"
        shutil.copyfile(db, copy)  # optuna-dashboard may write to its storage
        tensorboard = stack.enter_context(server(
            [executable("tensorboard"), "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(tb)], out / "tensorboard.log"))  # fmt: skip
        dashboard = stack.enter_context(server(
            [executable("optuna-dashboard"), f"sqlite:///{copy}",
             "--host", "127.0.0.1", "--port", str(od)], out / "optuna-dashboard.log"))  # fmt: skip
        runs = sum(1 for path in logdir.iterdir() if path.is_dir())

        def tb_groups() -> tuple[int, int]:
            raw = ask(tb, f"{HPARAMS}/session_groups", SESSION_GROUPS_REQUEST)
            return int(json.loads(raw).get("totalSize", 0)), len(raw)

        def od_studies() -> tuple[int, int]:
            raw = ask(od, "/api/studies")
            return len(json.loads(raw)["study_summaries"]), len(raw)

        ready = {
            "tensorboard": until(tensorboard, tb_groups, max(runs, 1), 120.0),
            "optuna_dashboard": until(dashboard, od_studies, 1, 120.0),
        }
        facts = {"tensorboard": tensorboard_facts(tb), "optuna_dashboard": dashboard_facts(od)}
        tb_url, od_url = f"http://127.0.0.1:{tb}", f"http://127.0.0.1:{od}/dashboard"
        columns = facts["tensorboard"]["hparams"] + facts["tensorboard"]["metrics"]
        names = [c.get("name") or c["display_name"] for c in columns]
        defaults: dict[str, bool] = {}  # filled by the first shot
        facts["tensorboard"]["checkboxes_by_default"] = defaults
        shots: list[tuple[str, str, Action | None]] = [
            ("tensorboard-hparams-table", f"{tb_url}/#hparams", tick([], defaults)),
            ("tensorboard-hparams-all-columns", f"{tb_url}/#hparams", tick(names, {})),
            ("tensorboard-hparams-parallel", f"{tb_url}/#hparams", click("Parallel Coordinates")),
            ("tensorboard-timeseries", f"{tb_url}/#timeseries", None),
            ("tensorboard-scalars", f"{tb_url}/#scalars", None),
            ("optuna-study-list", od_url, None),
        ]
        for study in facts["optuna_dashboard"]["studies"]:
            page = f"{od_url}/studies/{study['id']}"
            best = study["best_trials"][0]["number"] if study["best_trials"] else 0
            shots += [
                (f"optuna-study{study['id']}", page, None),
                (f"optuna-study{study['id']}-trials", f"{page}/trials?numbers={best}", None),
                (f"optuna-study{study['id']}-analytics", f"{page}/analytics", None),
            ]
        screenshots = shoot(chromium, shots, out, wait_s)
    record = {"experiment": str(experiment), "ready": ready, **facts, "screenshots": screenshots}
    (out / "views.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="a finished experiment directory")
    parser.add_argument("--out", type=Path, help="default: /tmp/views/<experiment name>/")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds for each page's JS")
    parser.add_argument("--chromium", help="the browser (default: chromium on PATH)")
    args = parser.parse_args()
    chromium = chromium_or_exit(args.chromium)
    experiment = args.experiment.resolve()
    out = args.out or Path("/tmp/views") / experiment.name
    record = views(experiment, out, chromium, args.wait)
    print(f"{len(record['screenshots'])} screenshots and views.json in {out}")


if __name__ == "__main__":
    main()
