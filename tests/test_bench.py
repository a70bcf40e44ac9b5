"""`fer-search bench`: the cheap figures at tiny sizes, the output files, the CLI. Timings are
never asserted (a benchmark reports them); only structure, arithmetic and JSON."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_fer_search

from fer_search import bench
from fer_search.cli import build_parser, main
from fer_search.config import TrainConfig
from fer_search.data import load_data, make_demo

FIGURE_KEYS = {"figure", "ratio", "goal", "met", "summary"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_fer_search(*args, env={"OMP_NUM_THREADS": "1"}, timeout=timeout)


def test_bench_help_lists_its_flags():
    proc = cli("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--quick", "--json", "--device", "--out", "--data"):
        assert flag in proc.stdout


def test_plan_quick_is_simple_cnn_and_full_cpu_skips_the_slow_nets():
    cpu = torch.device("cpu")
    quick, full = bench.make_plan(True, cpu), bench.make_plan(False, cpu)
    assert quick.archs == ("simple_cnn",) and quick.overhead == (4, 1)
    assert quick.asha == (12, 4, 4) and quick.asha_train_fraction == 1.0
    assert set(full.archs) == {"simple_cnn", "mobilenet_v2", "vgg16"}
    assert set(full.skipped) == {"resnet101", "densenet169"}
    assert full.overhead == (6, 2) and full.asha == (32, 16, 4)
    assert full.asha_train_fraction == 0.2
    assert all(arch in full.steps for arch in full.archs)


def test_only_choices_are_the_bench_figure_groups():
    action = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["bench"]._actions
        if a.dest == "only"
    )  # fmt: skip
    assert tuple(action.choices) == bench.FIGURE_GROUPS


def test_only_keeps_the_named_groups_and_names_the_files(tmp_path):
    args = build_parser().parse_args(["bench", "--quick", "--only", "asha", "--only", "data"])
    ctx = bench.Context(args, bench.make_plan(True, torch.device("cpu")), torch.device("cpu"),
                        tmp_path)  # fmt: skip
    assert [name for name, _ in bench.jobs(ctx, make_demo(0.05))] == ["data", "ASHA savings"]
    assert "--only asha --only data" in bench.command_line(args)
    result = {"quick": True, "only": ["asha", "data"], "machine": {}, "versions": {},
              "figures": [], "notes": [], "command": "c", "date": "d", "wall_s": 1.0,
              "data": "demo"}  # fmt: skip
    result["machine"] = dict.fromkeys(("platform", "cpu_count", "cpu", "torch_threads",
                                       "device", "device_name"), "x")  # fmt: skip
    json_path, md_path = bench.write_results(result, tmp_path)
    assert json_path.name == "bench-quick-asha-data.json" and md_path.exists()


def test_stratified_share_keeps_each_class_in_proportion():
    data = make_demo(0.5)
    share = bench.stratified_share(data, 0.25)
    full, part = data.splits["train"], share.splits["train"]
    assert share.splits["val"] is data.splits["val"]
    counts = np.bincount(full.labels, minlength=7)
    np.testing.assert_allclose(np.bincount(part.labels, minlength=7), counts * 0.25, atol=1)
    again = bench.stratified_share(data, 0.25).splits["train"]
    assert again.labels.tolist() == part.labels.tolist()  # seeded


def test_pipeline_figures_compare_the_engine_with_ceiling_and_naive():
    data = make_demo(0.1)
    cfg = TrainConfig(width=4, batch_size=16, device="cpu")
    rates = bench.measure_pipelines(
        cfg, data.splits["train"], data.splits["val"], steps=2, rounds=2, workers=(0,)
    )
    assert set(rates) == {"engine", "ceiling", "naive_0"}
    assert all(len(v) == 2 and all(r > 0 for r in v) for v in rates.values())  # warm-up dropped

    efficiency = bench.efficiency_figure("simple_cnn", rates)
    assert set(efficiency) >= FIGURE_KEYS
    expected = statistics.median(rates["engine"]) / statistics.median(rates["ceiling"])
    assert efficiency["ratio"] == pytest.approx(expected)
    assert efficiency["met"] == (efficiency["ratio"] >= 0.9)

    naive = bench.naive_figure("simple_cnn", rates, torch.device("cpu"))
    assert set(naive) >= FIGURE_KEYS and naive["naive_workers"] == 0
    expected = statistics.median(rates["engine"]) / statistics.median(rates["naive_0"])
    assert naive["ratio"] == pytest.approx(expected) and naive["goal"] == ">= 1.5"
    assert bench.naive_figure("vgg16", rates, torch.device("cpu"))["met"] is None  # no goal
    json.dumps([efficiency, naive], allow_nan=False)


def test_naive_dataset_applies_torchvision_transforms_per_item():
    split = make_demo(0.05).splits["train"]
    dataset = bench.NaiveFER2013(split, bench.naive_transform(TrainConfig(hflip=0.0, crop_pad=0)))
    image, label = dataset[3]
    assert image.shape == (1, 48, 48) and image.dtype == torch.float32
    assert label == int(split.labels[3])
    from fer_search.augment import normalize

    expected = normalize(torch.from_numpy(split.images[3:4]))[0]
    assert torch.allclose(image, expected, atol=1e-5)  # same normalisation as the engine


def test_csv_figure_times_a_cold_and_a_cached_load(tmp_path):
    data = make_demo(0.05)
    path = bench.write_kaggle_csv(data, tmp_path / "fer2013.csv")
    again = load_data(path, cache=False)
    for name, split in data.splits.items():
        assert np.array_equal(again.splits[name].images, split.images)
        assert np.array_equal(again.splits[name].labels, split.labels)

    figure = bench.figure_csv(path, 2, tmp_path / "cache")
    assert set(figure) >= FIGURE_KEYS and figure["file_bytes"] == path.stat().st_size
    expected = statistics.median(figure["cold_runs_s"]) / statistics.median(figure["cached_runs_s"])
    assert figure["ratio"] == pytest.approx(expected, rel=1e-3)
    json.dumps(figure, allow_nan=False)


def test_help_figure_times_the_cli_against_bare_python():
    figure = bench.figure_help(1)
    assert set(figure) >= FIGURE_KEYS and figure["help_s"] > 0 and figure["python_s"] > 0
    expected = statistics.median(figure["help_runs_s"]) / statistics.median(figure["python_runs_s"])
    assert figure["ratio"] == pytest.approx(expected, rel=1e-3)


def test_random_sampler_swaps_tpe_and_restores_it():
    optuna = pytest.importorskip("optuna")
    tpe = optuna.samplers.TPESampler
    with bench.random_sampler():
        sampler = optuna.samplers.TPESampler(seed=3, multivariate=True, n_startup_trials=2)
        assert isinstance(sampler, optuna.samplers.RandomSampler)
    assert optuna.samplers.TPESampler is tpe


def test_leaderboard_configs_ignore_trial_order():
    a = {"trial_id": "b1", "optimizer": "sgd", "lr": "0.1", "dropout": "0.2", "crop_pad": "1"}
    b = {"trial_id": "a9", "optimizer": "adamw", "lr": "0.001", "dropout": "0.0", "crop_pad": "0"}
    assert bench.leaderboard_configs([a, b]) == bench.leaderboard_configs([b, a])
    assert bench.leaderboard_configs([a]) != bench.leaderboard_configs([b])


def fake_figure(**extra):
    return {"figure": "fake", "ratio": 2.0, "goal": ">= 1", "met": True, "summary": "a / b"} | extra


def test_run_writes_json_and_markdown_and_records_a_broken_figure(tmp_path, monkeypatch, capsys):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(
        bench,
        "jobs",
        lambda ctx, data: [
            ("fake", lambda: [fake_figure(), fake_figure(ratio=float("nan"), met=None)]),
            ("broken", broken),
        ],
    )
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--json", "--demo-size", "0.05", "--out", str(out)])
    assert code == 1  # a figure failed
    printed = json.loads(capsys.readouterr().out)  # --json: stdout is only the JSON
    written = json.loads((out / "bench-quick.json").read_text())
    assert printed["figures"] == written["figures"]
    assert written["figures"][1]["ratio"] is None  # NaN is written as null
    assert written["figures"][2] == {"figure": "broken", "error": "RuntimeError: boom"}
    for key in ("command", "date", "machine", "versions", "plan"):
        assert key in written
    assert written["command"].startswith("fer-search bench --quick")
    for key in ("platform", "cpu_count", "torch_threads", "device_name"):
        assert key in written["machine"]
    for package in ("torch", "ray", "optuna", "numpy"):
        assert package in written["versions"]
    markdown = (out / "bench-quick.md").read_text()
    assert "| fake |" in markdown and "ERROR" in markdown and written["command"] in markdown
    assert "--quick: a few demo trials" in markdown  # why its overhead and ASHA ratios miss


def test_quick_note_only_when_its_overhead_or_asha_figures_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "jobs", lambda ctx, data: [("fake", lambda: [fake_figure()])])
    main(["bench", "--quick", "--only", "data", "--demo-size", "0.05", "--out", str(tmp_path)])
    notes = json.loads((tmp_path / "bench-quick-data.json").read_text())["notes"]
    assert not any("--quick" in note for note in notes)


def test_table_has_one_row_per_figure():
    table = bench.format_table([fake_figure(), {"figure": "x", "error": "ValueError: no"}])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].startswith("figure")
    assert "2.00" in lines[1] and "ERROR" in lines[2]


def test_search_args_parse_as_the_cli_would(tmp_path):
    args = build_parser().parse_args(["bench", "--quick"])
    ctx = bench.Context(args, bench.make_plan(True, torch.device("cpu")), torch.device("cpu"),
                        tmp_path)  # fmt: skip
    assert ctx.data_flags() == ["--data", "demo", "--demo-size", "1"]
    assert ctx.data_flags(0.25) == ["--data", "demo", "--demo-size", "0.25"]
    assert ctx.search_device_flags(0.5) == ["--gpus", "0"]
    flags = ["search", "--space", "x.yaml", *ctx.data_flags(), *ctx.search_device_flags(1)]
    parsed = build_parser().parse_args(flags)
    assert parsed.data == "demo" and parsed.gpus == 0


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
    memory = next(f for f in result["figures"] if f["figure"] == "memory")
    assert memory["trial_processes"] == 2 and memory["dataset_probe"]["read_only_views"]


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc only")
def test_proc_memory_sees_a_private_allocation():
    before = bench.proc_memory()
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, written, so resident and private
    after = bench.proc_memory()
    assert set(after) == {"rss", "anon", "shmem", "file", "uss"}
    assert after["anon"] - before["anon"] >= 60 << 20 and after["uss"] >= after["anon"] // 2
    del block
