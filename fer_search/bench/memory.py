"""Figure 5: memory. Driver and per-trial RSS/USS of real trials, and the private memory the
dataset costs each trial (it must not cost any: the dataset is shared through Ray's object
store, not copied).

Memory is read with psutil: `memory_full_info()` gives rss, uss (smaps_rollup on Linux) and
shared (resident file + shared-memory pages); anon = rss - shared is the private heap, where
a copy of the dataset would land (on Linux exactly /proc/PID/status's RssAnon).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import psutil

from fer_search import engine
from fer_search.bench.measure import goal_met, median, mib
from fer_search.bench.plan import Context
from fer_search.bench.search import FIXED_PARAMS, run_search, search_space
from fer_search.config import EMOTIONS
from fer_search.data import FERSplit

__all__ = ["dataset_probe", "figure_memory", "is_trial_worker", "process_memory", "sample_memory"]

FER2013_TRAIN, FER2013_VAL = 28709, 3589  # the images a trial sees on the real data
TRIAL_WORKER_SKIP = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


def process_memory(process: psutil.Process | None = None) -> dict[str, int]:
    """Bytes of a process's memory (default: this one): rss, uss, and where the platform
    reports shared pages (Linux), shared and anon = rss - shared."""
    info = (process or psutil.Process()).memory_full_info()
    out = {"rss": info.rss, "uss": info.uss}
    shared = getattr(info, "shared", None)
    if shared is not None:
        out.update(shared=shared, anon=info.rss - shared)
    return out


def is_trial_worker(process: psutil.Process) -> bool:
    """A Ray worker running a trial (`ray::<Trainable>`), not one of Ray's own helpers."""
    with contextlib.suppress(psutil.Error):
        name = process.name()
        return name.startswith("ray::") and not name.startswith(TRIAL_WORKER_SKIP)
    return False


@contextlib.contextmanager
def sample_memory(interval: float = 0.5) -> Iterator[dict[str, Any]]:
    """Peak memory of this process and of each trial worker it started (its descendants
    named `ray::<Trainable>`), sampled every `interval` seconds."""
    peaks: dict[str, Any] = {"driver": {}, "trials": {}, "max_concurrent": 0}
    stop = threading.Event()
    me = psutil.Process()
    # trial workers of an earlier search that are still shutting down are not this one's
    stale = {p.pid for p in me.children(recursive=True) if is_trial_worker(p)}

    def keep_peak(into: dict[str, int], process: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            for key, value in process_memory(process).items():
                into[key] = max(into.get(key, 0), value)

    def sample() -> None:
        while not stop.is_set():
            keep_peak(peaks["driver"], me)
            with contextlib.suppress(psutil.Error):
                children = me.children(recursive=True)
                workers = [p for p in children if p.pid not in stale and is_trial_worker(p)]
                peaks["max_concurrent"] = max(peaks["max_concurrent"], len(workers))
                for p in workers:
                    keep_peak(peaks["trials"].setdefault(p.pid, {}), p)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def trial_memory(ctx: Context) -> dict[str, Any]:
    """Two one-epoch trials at once (1 CPU each) on the run's data, memory sampled throughout:
    driver and per-trial peaks (MiB; per trial the median over the trial processes)."""
    space = search_space("bench-memory", 2, 1, FIXED_PARAMS)
    options = dict(no_asha=True, max_concurrent=2, cpus_per_trial=1, **ctx.search_resources(0.5))
    data = ctx.load()
    ctx.start_ray()
    gc.collect()
    before = process_memory()
    with sample_memory() as peaks:
        run_search(ctx, space, data, **options)
    trials = list(peaks["trials"].values())
    out: dict[str, Any] = {f"driver_{k}_mib": mib(v) for k, v in peaks["driver"].items()}
    out["driver_uss_growth_mib"] = mib(peaks["driver"].get("uss", 0) - before["uss"])
    for key in ("rss", "uss", "anon", "shared"):
        out[f"trial_{key}_mib"] = mib(median([t.get(key, 0) for t in trials]))
    out["trial_uss_each_mib"] = sorted(mib(t.get("uss", 0)) for t in trials)
    out.update(trial_processes=len(trials), max_concurrent_seen=peaks["max_concurrent"])
    return out


def probe_dataset(refs: Any) -> dict[str, Any]:
    """In a Ray worker: what fetching the dataset as a trial does (DatasetRefs.get, the
    engine's as_tensor) and reading every page of it costs this process, in bytes."""
    before = process_memory()
    splits = [refs.get("train"), refs.get("val")]
    tensors = [engine.as_tensor(s.images) for s in splits]
    pages = sum(int(t.reshape(-1)[::4096].sum()) for t in tensors)  # touch every page
    after = process_memory()
    growth = {k: after[k] - before[k] for k in after}
    views = all(not s.images.flags.writeable for s in splits)
    return {"growth": growth, "read_only_views": views, "checksum": pages}


def probe_splits(ctx: Context) -> dict[str, FERSplit]:
    """The run's train and val, or FER2013-sized random images where it is the demo data."""
    data = ctx.load()
    if data.source != "demo":
        return {name: data.splits[name] for name in ("train", "val")}
    rng = np.random.default_rng(0)
    return {
        name: FERSplit(name, rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
                       rng.integers(0, 7, n), EMOTIONS)
        for name, n in (("train", FER2013_TRAIN), ("val", FER2013_VAL))
    }  # fmt: skip


def dataset_probe(ctx: Context) -> dict[str, Any]:
    """The data put once as a search puts it; one Ray task fetches and reads it as a trial."""
    import ray

    from fer_search.tuning.trainable import DatasetRefs

    ctx.start_ray()
    splits = probe_splits(ctx)
    refs = DatasetRefs(splits, splits["train"].class_names)
    data_bytes = sum(s.images.nbytes + s.labels.nbytes for s in splits.values())
    task = ray.remote(num_cpus=1)(probe_dataset)
    result = ray.get(task.remote(refs))
    growth = {f"{k}_growth_mib": mib(v) for k, v in result["growth"].items()}
    return {"data_mib": mib(data_bytes), "read_only_views": result["read_only_views"], **growth}


def figure_memory(ctx: Context) -> dict[str, Any]:
    """Driver and per-trial memory of real trials, and what the dataset costs each trial
    privately (anonymous memory: a copy would land there; the object store's pages are
    shared memory, mapped once per node)."""
    trials, probe = trial_memory(ctx), dataset_probe(ctx)
    copied = probe.get("anon_growth_mib", float("nan"))
    ratio = copied / probe["data_mib"] if probe["data_mib"] else float("nan")
    return {
        "figure": "memory",
        "arch": "simple_cnn",
        **trials,
        "extra_uss_per_concurrent_trial_mib": trials["trial_uss_mib"],
        "dataset_probe": probe,
        "data_mib_per_extra_trial": copied,
        "ratio": ratio,
        "goal": "<= 5 MiB data per extra trial",
        "met": goal_met(copied, 5.0, False),
        "summary": f"trial USS {trials['trial_uss_mib']:.0f} MiB (RSS "
        f"{trials['trial_rss_mib']:.0f}), driver USS {trials['driver_uss_mib']:.0f}; data: "
        f"{copied:+.1f} MiB private of {probe['data_mib']:.0f} MiB shared",
        "note": "per trial: the peak of each trial worker (USS = pages no other process maps: "
        "Python, torch, Ray, model, activations; this is what each additional concurrent trial "
        "adds). Data per extra trial: the anonymous-memory growth (RSS - shared) of a Ray worker "
        "that fetches the dataset as a trial does and reads every page (ratio = that / the data "
        "size); shared growth = the object-store pages it maps instead (with any file pages). "
        "Driver = this bench process, which also holds the bench's own data and models.",
    }
