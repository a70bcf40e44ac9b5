"""`fer-search bench`: each figure measured at a tiny size on demo data, the options, the
output files, the CLI. Timings are never asserted (a benchmark reports them); only what each
figure measures, its arithmetic and its JSON."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_fer_search

from fer_search import api, bench
from fer_search.bench import data as bench_data
from fer_search.bench import memory, pipeline, runner, search
from fer_search.cli import build_parser, main
from fer_search.config import TrainConfig
from fer_search.data import load_data, make_demo
from fer_search.errors import UserError

FIGURE_KEYS = {"figure", "ratio", "goal", "met", "summary"}
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_fer_search(*args, env={"OMP_NUM_THREADS": "1"}, timeout=timeout)


def test_bench_help_lists_its_flags():
    proc = cli("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--quick", "--json", "--device", "--out", "--data", "--only"):
        assert flag in proc.stdout


def test_every_planned_arch_has_steps_and_the_cpu_run_skips_the_slow_nets():
    for quick in (True, False):
        plan = bench.make_plan(quick, CPU)
        assert all(plan.steps[arch] > 0 for arch in plan.archs)
        assert not set(plan.archs) & set(plan.skipped)
    assert set(bench.make_plan(False, CPU).skipped) == {"resnet101", "densenet169"}


def test_only_choices_are_the_bench_figure_groups():
    action = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["bench"]._actions
        if a.dest == "only"
    )  # fmt: skip
    assert tuple(action.choices) == bench.FIGURE_GROUPS


def test_options_are_checked_once_with_the_bad_value_named():
    with pytest.raises(UserError, match="'ash'.*did you mean 'asha'"):
        bench.BenchOptions.from_call(only=["ash"])
    with pytest.raises(UserError, match="--demo-size must be > 0, got 0"):
        bench.BenchOptions.from_call(data_args={"demo_size": 0})
    with pytest.raises(UserError, match="'demo_sise'"):
        bench.BenchOptions.from_call(data_args={"demo_sise": 1})
    options = bench.BenchOptions.from_call(quick=True, only=["asha", "data", "asha"])
    assert options.only == ("asha", "data") and options.data_is_demo


def test_load_kwargs_load_the_run_data_or_the_demo_at_a_size():
    options = bench.BenchOptions.from_call(
        data_args={"data": "demo", "class_set": "merge-disgust", "demo_size": 0.05}
    )
    data = api.load_data(**options.load_kwargs())
    assert data.source == "demo" and len(data.class_names) == 6
    small = api.load_data(**options.load_kwargs(0.02))
    assert len(small.splits["train"]) < len(data.splits["train"])
    assert small.class_names == data.class_names  # the class set is kept


def test_only_keeps_the_named_groups_and_names_the_files(tmp_path):
    options = bench.BenchOptions.from_call(quick=True, only=["asha", "data"])
    ctx = bench.Context(options, bench.make_plan(True, CPU), CPU, tmp_path)
    assert [name for name, _ in bench.jobs(ctx)] == ["data", "ASHA savings"]
    assert "--only asha --only data" in options.command_line()
    result = {"quick": True, "only": ["asha", "data"], "machine": {}, "versions": {},
              "figures": [], "notes": [], "command": "c", "date": "d", "wall_s": 1.0,
              "data": "demo"}  # fmt: skip
    result["machine"] = dict.fromkeys(("platform", "cpu_count", "cpu", "torch_threads",
                                       "device", "device_name"), "x")  # fmt: skip
    json_path, md_path = bench.output.write_results(result, tmp_path)
    assert json_path.name == "bench-quick-asha-data.json" and md_path.exists()


def test_stratified_share_keeps_each_class_in_proportion():
    data = make_demo(0.5)
    share = search.stratified_share(data, 0.25)
    full, part = data.splits["train"], share.splits["train"]
    assert share.splits["val"] is data.splits["val"]
    counts = np.bincount(full.labels, minlength=7)
    np.testing.assert_allclose(np.bincount(part.labels, minlength=7), counts * 0.25, atol=1)
    again = search.stratified_share(data, 0.25).splits["train"]
    assert again.labels.tolist() == part.labels.tolist()  # seeded
    assert share.load_args == {}  # built by hand: load_data cannot give it back


def test_pipeline_figures_compare_the_engine_with_ceiling_and_naive():
    data = make_demo(0.1)
    cfg = TrainConfig(width=4, batch_size=16, device="cpu")
    rates = pipeline.measure_pipelines(
        cfg, data.splits["train"], data.splits["val"], steps=2, rounds=2, workers=(0,)
    )
    assert set(rates) == {"engine", "ceiling", "naive_0"}
    assert all(len(v) == 2 and all(r > 0 for r in v) for v in rates.values())  # warm-up dropped

    efficiency = pipeline.efficiency_figure("simple_cnn", rates)
    assert set(efficiency) >= FIGURE_KEYS
    expected = statistics.median(rates["engine"]) / statistics.median(rates["ceiling"])
    assert efficiency["ratio"] == pytest.approx(expected)
    assert efficiency["met"] == (efficiency["ratio"] >= 0.9)

    naive = pipeline.naive_figure("simple_cnn", rates, CPU)
    assert set(naive) >= FIGURE_KEYS and naive["naive_workers"] == 0
    expected = statistics.median(rates["engine"]) / statistics.median(rates["naive_0"])
    assert naive["ratio"] == pytest.approx(expected)
    assert pipeline.naive_figure("vgg16", rates, CPU)["met"] is None  # no goal on CPU
    json.dumps([efficiency, naive], allow_nan=False)


def test_naive_dataset_applies_torchvision_transforms_per_item():
    split = make_demo(0.05).splits["train"]
    transform = pipeline.naive_transform(TrainConfig(hflip=0.0, crop_pad=0))
    image, label = pipeline.NaiveFER2013(split, transform)[3]
    assert image.shape == (1, 48, 48) and image.dtype == torch.float32
    assert label == int(split.labels[3])
    from fer_search.augment import normalize

    expected = normalize(torch.from_numpy(split.images[3:4]))[0]
    assert torch.allclose(image, expected, atol=1e-5)  # same normalisation as the engine


def test_csv_figure_parses_the_csv_it_wrote_cold_and_cached(tmp_path):
    data = make_demo(0.05)
    path = bench_data.write_kaggle_csv(data, tmp_path / "fer2013.csv")
    again = load_data(path, cache=False)
    for name, split in data.splits.items():
        assert np.array_equal(again.splits[name].images, split.images)
        assert np.array_equal(again.splits[name].labels, split.labels)

    figure = bench_data.figure_csv(path, 2, tmp_path / "cache")
    assert set(figure) >= FIGURE_KEYS and figure["file_bytes"] == path.stat().st_size
    assert any((tmp_path / "cache").iterdir())  # the cached side did use the cache
    expected = statistics.median(figure["cold_runs_s"]) / statistics.median(figure["cached_runs_s"])
    assert figure["ratio"] == pytest.approx(expected, rel=1e-3)
    json.dumps(figure, allow_nan=False)


def test_help_figure_times_the_cli_against_bare_python():
    figure = bench_data.figure_help(1)
    assert set(figure) >= FIGURE_KEYS and figure["help_s"] > 0 and figure["python_s"] > 0
    expected = statistics.median(figure["help_runs_s"]) / statistics.median(figure["python_runs_s"])
    assert figure["ratio"] == pytest.approx(expected, rel=1e-3)


def test_leaderboard_configs_ignore_trial_order():
    a = {"trial_id": "b1", "optimizer": "sgd", "lr": 0.1, "dropout": 0.2, "crop_pad": 1}
    b = {"trial_id": "a9", "optimizer": "adamw", "lr": 0.001, "dropout": 0.0, "crop_pad": 0}
    assert search.leaderboard_configs([a, b]) == search.leaderboard_configs([b, a])
    assert search.leaderboard_configs([a]) != search.leaderboard_configs([b])


# ---------------------------------------------------------------- figures 3-5: real searches
@pytest.fixture(scope="module")
def tiny_ctx(tmp_path_factory):
    """A bench context on demo data with a tiny plan; Ray started once for the module."""
    import ray

    ray.shutdown()  # a Ray another test module left running would hide the start-up time
    plan = dataclasses.replace(
        bench.make_plan(True, CPU), overhead=(1, 1), overhead_repeats=1, asha=(3, 2, 2),
        asha_demo_size=0.05,
    )  # fmt: skip
    options = bench.BenchOptions(quick=True, demo_size=0.05)
    ctx = bench.Context(options, plan, CPU, tmp_path_factory.mktemp("bench"))
    yield ctx
    ctx.stop_ray()


def test_search_overhead_figure_times_the_search_and_the_loop(tiny_ctx):
    figure = search.figure_search_overhead(tiny_ctx)
    assert set(figure) >= FIGURE_KEYS and (figure["trials"], figure["epochs"]) == (1, 1)
    assert figure["search_s"] > 0 and figure["loop_s"] > 0 and figure["ray_startup_s"] > 0
    assert figure["ratio"] > 0  # search / loop, Ray's start-up reported on its own:
    assert figure["ratio_with_ray_startup"] > figure["ratio"]
    json.dumps(figure, allow_nan=False)


def test_asha_figure_gives_both_searches_the_same_configurations(tiny_ctx):
    figure = search.figure_asha(tiny_ctx)
    assert figure["same_configs"] is True
    assert figure["epochs_no_asha"] == 3 * 2 and 3 <= figure["epochs_asha"] <= 3 * 2
    assert figure["ratio"] == figure["epochs_no_asha"] / figure["epochs_asha"]
    for arm in ("no_asha", "asha"):  # each best val_acc with its interval, as printed
        low, high = figure[f"best_val_acc_{arm}_ci95"]
        assert low <= figure[f"best_val_acc_{arm}"] <= high
        shown = f"{figure[f'best_val_acc_{arm}'] * 100:.2f} % [{low * 100:.2f}, "
        assert shown in figure["summary"]
    low, high = figure["gap_pp_ci95"]  # paired on the same val images
    assert low <= figure["gap_pp"] <= high and 0 <= figure["gap_p_value"] <= 1
    assert figure["gap_within_noise"] == (low <= 0 <= high)
    json.dumps(figure, allow_nan=False)


def test_memory_probe_sees_the_dataset_shared_not_copied(tiny_ctx):
    probe = memory.dataset_probe(tiny_ctx)
    assert probe["data_mib"] > 50 and probe["read_only_views"]  # FER2013-sized in place of demo
    # a copy would add the whole dataset to the worker's private (anonymous) memory
    assert probe["anon_growth_mib"] < probe["data_mib"] / 2
    assert probe["shared_growth_mib"] > probe["data_mib"] / 2  # the object store's pages


def test_checkpoint_figure_counts_what_the_policy_writes(tiny_ctx, one_torch_thread):
    from fer_search.bench import checkpoint

    sizes = checkpoint.epoch_sizes(tiny_ctx, "simple_cnn", epochs=3, images=32)
    assert [s["epoch"] for s in sizes] == [1, 2, 3] and sizes[0]["new_best"]
    for size in sizes:  # at a new best the best weights are stored once, not twice: one copy of
        # the weights fewer than weights + optimiser momentum + best weights
        if size["new_best"]:
            assert size["old_bytes"] > 1.2 * size["bytes"]
        else:
            assert size["old_bytes"] == pytest.approx(size["bytes"], rel=0.01)
    every_epoch = checkpoint.per_epoch_mib(sizes, 1)
    assert every_epoch <= bench.measure.mib(sum(s["old_bytes"] for s in sizes)) / 3
    assert checkpoint.per_epoch_mib(sizes, 4) <= every_epoch  # fewer checkpoints, fewer bytes
    (figure,) = checkpoint.checkpoint_figures(tiny_ctx)  # quick: simple_cnn only
    assert figure["arch"] == "simple_cnn" and set(figure["after_mib_per_epoch"]) == {"1", "2", "4"}
    json.dumps(figure, allow_nan=False)


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc only")
def test_process_memory_sees_a_private_allocation():
    before = memory.process_memory()
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, written, so resident and private
    after = memory.process_memory()
    assert set(after) == {"rss", "uss", "shared", "anon"}
    assert after["anon"] - before["anon"] >= 60 << 20 and after["uss"] - before["uss"] >= 60 << 20
    del block


# ---------------------------------------------------------------- run, files, CLI
def fake_figure(**extra):
    return {"figure": "fake", "ratio": 2.0, "goal": ">= 1", "met": True, "summary": "a / b"} | extra


def test_run_writes_json_and_markdown_and_records_a_broken_figure(tmp_path, monkeypatch, capsys):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(
        runner,
        "jobs",
        lambda ctx: [
            ("fake", lambda: [fake_figure(), fake_figure(ratio=float("nan"), met=None)]),
            ("broken", broken),
        ],
    )
    out = tmp_path / "bench"
    code = bench.run(quick=True, as_json=True, out=out, data_args={"demo_size": 0.05}, show=print)
    assert code == 1  # a figure failed
    printed = json.loads(capsys.readouterr().out)  # as_json: stdout is only the JSON
    written = json.loads((out / "bench-quick.json").read_text())
    assert printed["figures"] == written["figures"]
    assert written["figures"][1]["ratio"] is None  # NaN is written as null
    assert written["figures"][2] == {"figure": "broken", "error": "RuntimeError: boom"}
    assert written["command"].startswith("fer-search bench --quick --demo-size 0.05")
    for key in ("platform", "cpu_count", "torch_threads", "device_name"):
        assert key in written["machine"]
    for package in ("torch", "ray", "optuna", "numpy"):
        assert package in written["versions"]
    markdown = (out / "bench-quick.md").read_text()
    assert "| fake |" in markdown and "ERROR" in markdown and written["command"] in markdown
    assert "--quick: a few demo trials" in markdown  # why its overhead and ASHA ratios miss


def test_cli_bench_runs_the_named_groups_only(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        runner, "jobs", lambda ctx: seen.append(ctx.options) or [("fake", lambda: [fake_figure()])]
    )
    code = main(["bench", "--quick", "--only", "data", "--demo-size", "0.05", "--out",
                 str(tmp_path)])  # fmt: skip
    assert code == 0 and seen[0].only == ("data",) and seen[0].demo_size == 0.05
    notes = json.loads((tmp_path / "bench-quick-data.json").read_text())["notes"]
    assert not any("--quick" in note for note in notes)  # no overhead or ASHA figure ran


def test_table_has_one_row_per_figure():
    table = bench.output.format_table([fake_figure(), {"figure": "x", "error": "ValueError: no"}])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].startswith("figure")
    assert "2.00" in lines[1] and "ERROR" in lines[2]


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    proc = cli("bench", "--quick", "--out", str(tmp_path), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench-quick.json").read_text())
    names = [f["figure"] for f in result["figures"]]
    for name in ("pipeline efficiency", "vs naive pipeline", "search overhead", "ASHA savings",
                 "memory", "data: parse", "data: --help start"):  # fmt: skip
        assert name in names
    assert all("error" not in f for f in result["figures"])
    asha = next(f for f in result["figures"] if f["figure"] == "ASHA savings")
    assert asha["same_configs"] and asha["epochs_no_asha"] == 12 * 4
    memory_figure = next(f for f in result["figures"] if f["figure"] == "memory")
    assert memory_figure["trial_processes"] == 2
    assert memory_figure["dataset_probe"]["read_only_views"]
