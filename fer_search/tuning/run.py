"""The search: a Tune Tuner with an Optuna searcher (TPE) and ASHA, then a final evaluation.

The driver loads the dataset once, puts it in Ray's object store, and hands each trial the
references; it writes the leaderboard, evaluates the best trial (and a top-k ensemble) on the
test split once, and builds the report. `--resume DIR` continues an interrupted experiment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from fer_search.errors import UserError

__all__ = ["run"]

STEP_ATTR = "epoch"
SELECTION_RULE = (
    "trials ranked by best val_acc on PublicTest (the val split); PrivateTest (the test split) "
    "is used once, here, after selection"
)
RUN_FILE = "experiment.json"
MIN_FREE_MB = 100  # below this a full disk would fail the search at a checkpoint


# ---------------------------------------------------------------- set-up
def space_from_args(args: argparse.Namespace):
    from fer_search.space import apply_overrides, load_space

    if not args.space:
        raise UserError("no search space: pass --space FILE.yaml (or a shipped name such as demo)")
    space = load_space(args.space)
    return apply_overrides(
        space,
        epochs=args.epochs,
        num_samples=args.num_samples,
        seed=args.seed,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        max_concurrent=args.max_concurrent,
        time_budget=args.time_budget,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        top_k=args.top_k,
        refit_budget=args.refit_budget,
        refit_top_k=args.refit_top_k,
    )


def check_counts(args: argparse.Namespace) -> None:
    names = ("num_samples", "epochs", "grace_period", "max_concurrent", "top_k", "cpus")
    for name in (*names, "refit_top_k"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.gpus is not None and args.gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {args.gpus:g}")
    gpt = args.gpus_per_trial
    if gpt is not None and not 0 < gpt <= 1:
        raise UserError(
            f"--gpus-per-trial must be in (0, 1] (a trial trains on one GPU), got {gpt:g}"
        )
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be > 0 seconds, got {args.time_budget:g}")
    if args.refit_budget is not None and args.refit_budget < 0:
        raise UserError(f"--refit-budget must be >= 0 seconds, got {args.refit_budget:g}")


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_resources(
    args: argparse.Namespace,
    experiment,
    cluster: dict[str, float],
    nodes: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Trial resources and concurrency from the flags, the space and what the cluster has.
    With `nodes` (each node's CPU/GPU totals), a trial must fit on one node, and concurrency is
    what the nodes hold together, so every GPU node gets trials."""
    have_gpus = cluster.get("GPU", 0.0)
    have_cpus = cluster.get("CPU", 0.0)
    gpus = have_gpus if args.gpus is None else args.gpus
    if gpus > have_gpus:
        raise UserError(
            f"--gpus {args.gpus:g} asked for {args.gpus:g} GPUs but the Ray cluster has "
            f"{have_gpus:g}; use --gpus {have_gpus:g} or join a GPU cluster with --address"
        )
    cpus_per_trial = float(experiment.cpus_per_trial)
    if cpus_per_trial > have_cpus:
        raise UserError(
            f"cpus_per_trial={cpus_per_trial:g} but the Ray cluster has {have_cpus:g} CPUs; "
            f"use --cpus-per-trial {max(1, int(have_cpus))}"
        )
    if gpus == 0:
        gpus_per_trial, device = 0.0, "cpu"
    else:
        gpus_per_trial = float(experiment.gpus_per_trial or 1.0)
        if gpus_per_trial > gpus:
            raise UserError(f"--gpus-per-trial {gpus_per_trial:g} exceeds the {gpus:g} GPUs in use")
        device = "cuda"
    limit = math.floor(have_cpus / cpus_per_trial)
    if gpus_per_trial:
        limit = min(limit, math.floor(gpus / gpus_per_trial + 1e-9))
    if nodes:
        fits = [trials_on_node(n, cpus_per_trial, gpus_per_trial) for n in nodes]
        if not any(fits):
            biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
            raise UserError(
                f"no Ray node can hold one trial ({cpus_per_trial:g} CPUs, {gpus_per_trial:g} "
                f"GPUs): the largest has {biggest.get('CPU', 0.0):g} CPUs and "
                f"{biggest.get('GPU', 0.0):g} GPUs; lower --cpus-per-trial or --gpus-per-trial"
            )
        limit = min(limit, sum(fits))
    if experiment.max_concurrent:
        limit = min(limit, experiment.max_concurrent)
    return {
        "gpus": gpus,
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": cpus_per_trial,
        "max_concurrent": max(1, limit),
        "device": device,
        "cluster": {k: cluster[k] for k in ("CPU", "GPU") if k in cluster},
        "nodes": len(nodes) if nodes else 1,
    }


def trials_on_node(node: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    fit = math.floor(node.get("CPU", 0.0) / cpus_per_trial + 1e-9)
    if gpus_per_trial:
        fit = min(fit, math.floor(node.get("GPU", 0.0) / gpus_per_trial + 1e-9))
    return max(0, fit)


def start_ray(args: argparse.Namespace) -> None:
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # keep the trimmed CLIReporter table
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    # one checkpoint per epoch is the design, not a bottleneck worth a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address:
        from fer_search.cluster import connect, wait_for_gpus

        connect(address)
        if args.gpus:
            wait_for_gpus(args.gpus)  # an autoscaler may still be starting GPU workers
        return
    context = ray.init(
        address="local",  # a new local instance, never a `ray start` cluster found on the machine
        num_cpus=args.cpus,
        num_gpus=None if args.gpus is None else int(math.ceil(args.gpus)),
        dashboard_host="127.0.0.1",  # only this machine; started when ray[default] is installed
        include_dashboard=None,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url}", file=sys.stderr)


# ---------------------------------------------------------------- experiment files
def new_experiment_dir(args: argparse.Namespace, space) -> Path:
    """`<storage>/<name>/`; with a URI --storage, the driver's `./results/<name>/` (Tune's
    trials go to `<uri>/<name>/`)."""
    from fer_search.cluster import check_location_free, resolve_storage, tune_location

    root, uri = resolve_storage(args.storage)
    name = args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp = root / name
    if exp.exists():
        raise UserError(
            f"experiment {str(exp)!r} already exists; use --resume {exp} or another --name"
        )
    if uri:
        check_location_free(tune_location(uri, name))
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"results directory {str(root)!r} is not writable ({exc.strerror})"
        ) from None
    return exp


def versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    from fer_search import __version__

    return {
        "fer_search": __version__,
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def check_free_space(root: Path) -> None:
    """A full disk would end the search at its first checkpoint: say so before it starts."""
    free_mb = shutil.disk_usage(root).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise UserError(
            f"results directory {str(root)!r} has {free_mb:.1f} MiB free; a search needs at "
            f"least {MIN_FREE_MB} MiB for checkpoints and logs (free space or use --storage)"
        )


def tune_dir(exp: Path, args: argparse.Namespace) -> str:
    """Where Tune keeps this experiment: `exp` itself, or `<uri>/<name>` for a URI --storage."""
    from fer_search.cluster import is_uri, tune_location

    return tune_location(args.storage, exp.name) if is_uri(args.storage) else str(exp)


# ---------------------------------------------------------------- the Tuner
def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(exp: Path, space, plan: dict[str, Any], refs, args, *, restore: bool):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from fer_search.cluster import is_uri
    from fer_search.trainable import run_trial
    from fer_search.tune_optuna import PruningOptunaSearch, SpaceSampler

    ex = space.experiment
    resources = {"cpu": plan["cpus_per_trial"], "gpu": plan["gpus_per_trial"]}
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=refs), resources)
    if restore:
        return tune.Tuner.restore(
            tune_dir(exp, args),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(
        seed=ex.seed,
        multivariate=True,
        group=True,
        n_startup_trials=min(10, max(2, ex.num_samples // 3)),
        constant_liar=plan["max_concurrent"] > 1,
    )
    searcher = PruningOptunaSearch(
        space=SpaceSampler(space),
        metric=ex.metric,
        mode=ex.mode,
        sampler=sampler,
        storage=optuna.storages.RDBStorage(f"sqlite:///{exp / 'optuna.db'}"),
        study_name=exp.name,
        max_t=ex.epochs,
        step_attr=STEP_ATTR,
        points_to_evaluate=[dict(point) for point in space.points] or None,
    )
    if args.no_asha:
        scheduler = FIFOScheduler()
    else:
        scheduler = ASHAScheduler(
            time_attr=STEP_ATTR,
            max_t=ex.epochs,
            grace_period=ex.grace_period,
            reduction_factor=ex.reduction_factor,
        )
    threads = max(1, int(plan["cpus_per_trial"]))
    constants = {
        "epochs": ex.epochs,
        "seed": ex.seed,
        "device": plan["device"],
        "threads": threads,
        "class_set": args.class_set or "all",
    }
    reporter = tune.CLIReporter(
        parameter_columns={"model": "arch", "lr": "lr", "dropout": "dropout"},
        metric_columns={"epoch": "epoch", "val_acc": "val_acc", "best_val_acc": "best"},
        max_report_frequency=30,
        # sort_by_metric breaks Ray's table when a trial ends before its first result
    )
    return tune.Tuner(
        trainable,
        param_space=constants,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=ex.metric,
            mode=ex.mode,
            num_samples=ex.num_samples,
            max_concurrent_trials=plan["max_concurrent"],
            time_budget_s=ex.search_budget or None,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=exp.name,
            storage_path=args.storage if is_uri(args.storage) else str(exp.parent),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1),
            progress_reporter=reporter,
            verbose=args.verbose,
        ),
    )


# ---------------------------------------------------------------- the refit
REFIT_DIR = "refit"  # exp/refit/trial_refit, trial_refit2, ...: the best configurations retrained


def refit_dirname(trial) -> str:
    from fer_search.config import refit_id
    from fer_search.trainable import REFIT_MEMBER

    return f"trial_{refit_id(int(trial.config.get(REFIT_MEMBER, 0)))}"


def refit_epochs(best: dict[str, Any], seconds: float) -> int:
    """Epochs of the best configuration that fit in `seconds`, at the best trial's measured
    seconds per epoch (training plus validation, same resources); 0 when that is no longer
    than the trial already trained."""
    per_epoch = best.get("_epoch_s", float("nan"))
    if math.isnan(per_epoch) or per_epoch <= 0:
        return 0
    epochs = int(seconds / per_epoch)
    return epochs if epochs > best["epochs"] else 0


# How a CPU trial's speed grows with its threads, for planning a refit that gets more CPUs than
# its trial had: speed ~ threads ** THREAD_SCALING. On this project's 2-core machine, a bf16
# simple_cnn training step on a resident batch ran at 441 images/s on one thread and 815 on two
# (2 ** 0.89), but whole epochs less well: results/reference-run3's one-CPU trial took 83 s per
# epoch and its two-CPU refit 49.2 s (2 ** 0.75; planned at 0.8, it overran by 39 s). 0.7 plans
# on the safe side, since a refit that overruns its budget overruns the whole search's.
THREAD_SCALING = 0.7


def refit_share(plan: dict[str, Any], k: int) -> tuple[dict[str, float], float]:
    """The resources of each of `k` refits running at once, and how much slower than a search
    trial each is expected to be (below 1: faster). The k refits share what the search's
    concurrent trials used: with fewer refits than concurrent trials on CPU, each gets the CPUs
    of several trials (two one-CPU trials at a time, one refit: two CPUs, planned at
    2 ** -THREAD_SCALING of its trial's seconds per epoch); on GPU each still gets one trial's
    resources (one model does not spread over several GPUs); with more refits than concurrent
    trials each gets an equal share (2 CPUs and one trial at a time: two refits of 1 CPU each,
    each about 2x slower per epoch)."""
    cpus, gpus = float(plan["cpus_per_trial"]), float(plan["gpus_per_trial"])
    concurrent = int(plan["max_concurrent"])
    if k < concurrent and not gpus:
        pooled = float(math.floor(cpus * concurrent / k))
        return {"cpu": pooled, "gpu": 0.0}, (cpus / pooled) ** THREAD_SCALING
    if k <= concurrent:
        return {"cpu": cpus, "gpu": gpus}, 1.0
    share = concurrent / k
    cpus_each = max(1.0, math.floor(cpus * share))
    if gpus:
        return {"cpu": cpus_each, "gpu": gpus * share}, 1.0 / share
    return {"cpu": cpus_each, "gpu": 0.0}, cpus / cpus_each


def refit_members(refit: dict[str, Any]) -> list[dict[str, Any]]:
    """The refit's configurations; an experiment.json from before `refit_top_k` held one."""
    from fer_search.config import REFIT_ID

    if "members" in refit:
        return list(refit["members"])
    keys = ("from_trial", "epochs", "config")
    return [{"id": REFIT_ID, **{k: refit[k] for k in keys}}]


def run_refit(exp: Path, space, plan: dict[str, Any], refs, args, record: dict[str, Any]):
    """Train the refit's configurations from scratch, at once, as the trials of one Tune run
    under exp/refit (so they checkpoint, log to TensorBoard and resume like any trial).
    Returns the Tune results, or None when the refit was interrupted."""
    from ray import tune

    from fer_search.trainable import REFIT_MEMBER, run_refit_trial

    base = tune_dir(exp, args)
    location = f"{base.rstrip('/')}/{REFIT_DIR}"
    members = refit_members(record["refit"])
    configs = [{**m["config"], "epochs": m["epochs"]} for m in members]
    resources = record["refit"].get("resources") or {
        "cpu": plan["cpus_per_trial"],
        "gpu": plan["gpus_per_trial"],
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_refit_trial, data=refs, members=configs), resources
    )
    if tune.Tuner.can_restore(location):
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={REFIT_MEMBER: tune.grid_search(list(range(len(members))))},
            tune_config=tune.TuneConfig(
                metric=space.experiment.metric,
                mode=space.experiment.mode,
                num_samples=1,
                max_concurrent_trials=len(members),
                trial_dirname_creator=refit_dirname,
                trial_name_creator=refit_dirname,
            ),
            run_config=tune.RunConfig(
                name=REFIT_DIR,
                storage_path=base,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=1),
                verbose=args.verbose,
            ),
        )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    states = trial_states(location)
    if any(state not in ("TERMINATED", "ERROR") for state in states.values()):
        return None
    return results


def refit_rows(results, members: list[dict[str, Any]], space, exp: Path) -> list[dict[str, Any]]:
    """Leaderboard rows of the refit's trials, named refit, refit2, ... with the parameters of
    the configuration each trained (Tune only knows its index)."""
    from fer_search.space import train_values
    from fer_search.trainable import REFIT_MEMBER

    rows = []
    for result in results:
        member = members[int((result.config or {}).get(REFIT_MEMBER, 0))]
        row = trial_rows([result], space, exp, {})[0]
        values = train_values(member["config"])
        row.update({name: values.get(name, "") for name in searched_settings(space)})
        row["trial_id"], row["_config"] = member["id"], member["config"]
        rows.append(row)
    return rows


def plan_refit(
    rows: list[dict[str, Any]], space, elapsed: float, plan: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """What to refit (the configurations of the best `refit_top_k` trials) and for how many
    epochs each, or None with the reason printed: no refit budget, no candidate, or too little
    time left. `plan` (the search's resources) sets what each of several refits gets."""
    from fer_search.config import refit_id

    ex = space.experiment
    ranked = [r for r in selectable(rows) if r.get("_config")]
    if not ex.refit_budget or not ranked:
        return None
    seconds = ex.time_budget - elapsed if ex.time_budget else ex.refit_budget
    k = min(ex.refit_top_k, len(ranked))
    resources, slowdown = refit_share(plan, k) if plan else ({}, 1.0)
    members: list[dict[str, Any]] = []
    for row in ranked[:k]:
        epochs = refit_epochs(row, seconds / slowdown)
        if not epochs:
            print(
                f"no refit of trial {row['trial_id']}: {seconds:.0f} s left fit no more than the "
                f"{row['epochs']} epochs it already trained",
                file=sys.stderr,
            )
            continue
        config = {key: v for key, v in row["_config"].items() if key != "trial_number"}
        if resources:
            config["threads"] = max(1, int(resources["cpu"]))
        members.append(
            {"id": refit_id(len(members)), "from_trial": row["trial_id"], "epochs": epochs,
             "config": config}
        )  # fmt: skip
        print(
            f"refit: training trial {row['trial_id']}'s configuration again for {epochs} epochs "
            f"({seconds:.0f} s left at {row['_epoch_s'] * slowdown:.1f} s per epoch)",
            flush=True,
        )
    if not members:
        return None
    return {"members": members, "resources": resources or None, "done": False}


# ---------------------------------------------------------------- after the search
def searched_settings(space) -> list[str]:
    """The TrainConfig fields a space sets, once each (`lr@sgd` and `lr@adamw` are both `lr`)."""
    return list(dict.fromkeys(p.setting for p in space.params))


def trial_states(exp: Path | str) -> dict[str, str]:
    """Tune's saved status per trial id: TERMINATED, ERROR, or RUNNING/PENDING/PAUSED when the
    search was interrupted (Tune's in-memory results call those TERMINATED; its saved
    experiment state, which `--resume` reads, does not). `exp` may be a URI (`tune_dir`)."""
    from fer_search.cluster import is_uri, latest_experiment_state

    if is_uri(str(exp)):
        text = latest_experiment_state(str(exp))
    else:
        files = sorted(Path(exp).glob("experiment_state-*.json"))  # by start time; newest last
        text = files[-1].read_text() if files else None
    if text is None:
        return {}
    states = {}
    for entry in json.loads(text).get("trial_data", []):
        trial = json.loads(entry[0] if isinstance(entry, list) else entry)
        states[trial["trial_id"]] = trial["status"]
    return states


def saved_search_complete(exp: Path, space) -> float | None:
    """If Tune's saved state shows a search that had ended (every trial final, and all samples
    started or the time budget spent) though its leaderboard and final evaluation were never
    written (the driver died at the very end), its wall time; else None. `--resume` then only
    finalises it."""
    files = sorted(exp.glob("experiment_state-*.json"))
    if not files:
        return None
    states = trial_states(exp)
    start = json.loads(files[-1].read_text()).get("stats", {}).get("start_time")
    elapsed = files[-1].stat().st_mtime - start if start else 0.0
    budget = space.experiment.search_budget
    spent = bool(budget) and elapsed >= 0.95 * budget
    ended = len(states) >= space.experiment.num_samples or spent
    if states and ended and not was_interrupted(states, space, elapsed):
        return elapsed
    return None


def was_interrupted(states: dict[str, str], space, wall: float) -> bool:
    if any(state not in ("TERMINATED", "ERROR") for state in states.values()):
        return True
    budget = space.experiment.search_budget
    out_of_time = bool(budget) and wall >= 0.95 * budget
    return len(states) < space.experiment.num_samples and not out_of_time


def trial_rows(results, space, exp: Path, states: dict[str, str]) -> list[dict[str, Any]]:
    from fer_search.cluster import node_ips as cluster_node_ips
    from fer_search.space import train_values

    max_t = space.experiment.epochs
    names = searched_settings(space)
    node_ips = cluster_node_ips()
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        metrics = result.metrics or {}
        config = result.config or {}
        has = frame is not None and len(frame) and "val_acc" in frame
        epochs = int(frame["epoch"].max()) if has else 0
        best_i = frame["val_acc"].idxmax() if has else None
        error = "" if result.error is None else str(result.error).strip().splitlines()[-1][:300]
        trial_id = metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_")
        if states.get(trial_id, "TERMINATED") not in ("TERMINATED", "ERROR"):
            status = "unfinished"  # interrupted; --resume continues it
        elif result.error is not None:
            status = "nan" if "FloatingPointError" in repr(result.error) else "failed"
        elif epochs >= max_t:
            status = "completed"
        elif epochs == 0:
            status = "failed" if error else "pruned"
        else:
            status = "pruned"
        row = {
            "trial_id": trial_id,
            "status": status,
            "val_acc": float(frame.loc[best_i, "val_acc"]) if has else float("nan"),
            "val_f1": float(frame.loc[best_i, "val_f1"]) if has else float("nan"),
            "best_epoch": int(frame.loc[best_i, "epoch"]) if has else 0,
            "epochs": epochs,
            "time_s": float(metrics.get("time_total_s", 0.0)),
            "node": metrics.get("node", ""),
            "node_ip": node_ips.get(metrics.get("node", ""), ""),
            # a URI's trial path has no leading '/': its small files are copied to exp/<name>
            "trial_dir": os.path.relpath(result.path, exp)
            if os.path.isabs(result.path)
            else Path(result.path).name,
            "error": error,
        }
        values = train_values(config)
        for name in names:
            row[name] = values.get(name, "")
        row["_checkpoint"] = result.checkpoint
        row["_config"] = config
        row["_epoch_s"] = (
            float(frame["time_this_iter_s"].median())
            if has and "time_this_iter_s" in frame
            else float("nan")
        )
        rows.append(row)
    return rank_rows(rows)


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates first (best val_acc first), then unfinished and failed trials."""
    return sorted(
        rows,
        key=lambda r: (
            r["status"] not in ("completed", "pruned"),
            -(r["val_acc"] if r["val_acc"] == r["val_acc"] else -1.0),
            r["trial_id"],
        ),
    )


def write_leaderboard(rows: list[dict[str, Any]], exp: Path) -> Path:
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    path = exp / "leaderboard.csv"
    frame.to_csv(path, index=False)
    return path


def load_trial_model(checkpoint, device):
    from fer_search import engine
    from fer_search.trainable import CHECKPOINT_FILE

    with checkpoint.as_directory() as directory:
        payload = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    if payload.get("best_state_dict") is not None:
        payload["state_dict"] = payload["best_state_dict"]
    return payload, engine.model_from_checkpoint(payload, device)


def final_evaluation(rows, data, space, exp: Path) -> dict[str, Any] | None:
    """Evaluate the best trial, and the top-k ensemble, on the test split, once."""
    import numpy as np

    from fer_search import engine
    from fer_search.evaluation import classification_metrics, plot_confusion

    ranked = [r for r in selectable(rows) if r["_checkpoint"] is not None]
    if not ranked or "test" not in data.splits:
        return None
    device = engine.resolve_device("auto")
    val, test = data.splits["val"], data.splits["test"]
    members = []
    for row in ranked[: space.experiment.top_k]:
        payload, model = load_trial_model(row["_checkpoint"], device)
        members.append(
            {
                "row": row,
                "payload": payload,
                "val": engine.predict_probs(model, val.images, device=device),
                "test": engine.predict_probs(model, test.images, device=device),
                "test_tta": engine.predict_probs(model, test.images, device=device, tta="flip"),
            }
        )
    best = members[0]
    best_metrics = classification_metrics(best["test"], test.labels, test.class_names)
    (exp / "best").mkdir(exist_ok=True)
    resume_only = ("optimizer", "best_state_dict", "ema_state_dict")  # state_dict is the best
    payload = {k: v for k, v in best["payload"].items() if k not in resume_only}
    engine.save_checkpoint(exp / "best" / "best.pt", payload)

    def acc(probs: np.ndarray, labels: np.ndarray) -> float:
        return float((probs.argmax(1) == labels).mean())

    final: dict[str, Any] = {
        "selection": SELECTION_RULE,
        "best": {
            "trial_id": best["row"]["trial_id"],
            "val_acc": acc(best["val"], val.labels),
            "test_acc": best_metrics["accuracy"],
            "test_acc_tta": acc(best["test_tta"], test.labels),
            "test_f1": best_metrics["macro_f1"],
            "checkpoint": "best/best.pt",
            "config": payload["config"],
            "metrics": best_metrics,
        },
        "ensemble": None,
    }
    if len(members) > 1:
        mean = {
            key: np.mean([m[key] for m in members], axis=0) for key in ("val", "test", "test_tta")
        }
        final["ensemble"] = {
            "k": len(members),
            "trial_ids": [m["row"]["trial_id"] for m in members],
            "val_acc": acc(mean["val"], val.labels),
            "test_acc": acc(mean["test"], test.labels),
            "test_acc_tta": acc(mean["test_tta"], test.labels),
        }
    write_json(exp / "final.json", final)
    title = f"best trial {final['best']['trial_id']} on test"
    plot_confusion(
        best_metrics["confusion_matrix"], test.class_names, exp / "confusion_test.png", title
    )
    log_confusion_to_tensorboard(exp, best_metrics, test.class_names, title)
    return final


def log_confusion_to_tensorboard(exp: Path, metrics, class_names, title: str) -> None:
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from fer_search.evaluation import confusion_figure

    writer = SummaryWriter(log_dir=str(exp / "final"))
    writer.add_figure(
        "final/confusion_test", confusion_figure(metrics["confusion_matrix"], class_names, title)
    )
    writer.add_scalar("final/test_acc", metrics["accuracy"])
    writer.close()
    plt.close("all")


def selectable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials a model may be selected from: finished or stopped by ASHA, with a val score.
    A trial that failed after a good epoch is not a candidate, however good that epoch was."""
    return [
        r for r in rows if r["status"] in ("completed", "pruned") and r["val_acc"] == r["val_acc"]
    ]


def summary_line(rows, exp: Path, wall: float) -> str:
    counts = {
        s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed", "nan")
    }
    parts = [f"{len(rows)} trials: {counts['completed']} completed, {counts['pruned']} pruned"]
    if counts["failed"] or counts["nan"]:
        parts.append(f"{counts['failed'] + counts['nan']} failed")
    done = ", ".join(parts)
    ranked = selectable(rows)
    if not ranked:
        return f"{done} in {wall:.0f} s; no trial finished an epoch; results in {exp}"
    best = ranked[0]
    return (
        f"{done} in {wall:.0f} s; best {best['trial_id']} val_acc {best['val_acc'] * 100:.2f} % "
        f"(epoch {best['best_epoch']}); results in {exp}"
    )


# ---------------------------------------------------------------- entry point
def load_experiment(path: str) -> tuple[Path, dict[str, Any]]:
    from ray import tune

    from fer_search.cluster import tune_location

    exp = Path(path).expanduser().resolve()
    record = json.loads((exp / RUN_FILE).read_text()) if (exp / RUN_FILE).is_file() else {}
    uri = record.get("storage_uri")  # Tune's trials live at <uri>/<name>
    if not record or not tune.Tuner.can_restore(tune_location(uri, exp.name) if uri else str(exp)):
        raise UserError(
            f"--resume {path!r} is not a fer-search experiment directory "
            f"(no {RUN_FILE} or Tune state in it)"
        )
    return exp, record


def new_record(args: argparse.Namespace, exp: Path, space, data, plan: dict[str, Any]):
    """experiment.json: how the search was started; `--resume` and the report read it."""
    from fer_search.cluster import is_uri

    ex = space.experiment
    return {
        "name": exp.name,
        "space": space.name,
        "command": "fer-search " + shlex.join(sys.argv[1:]),
        "metric": ex.metric,
        "mode": ex.mode,
        "max_t": ex.epochs,
        "grace_period": ex.grace_period,
        "reduction_factor": ex.reduction_factor,
        "num_samples": ex.num_samples,
        "asha": not args.no_asha,
        "no_asha": args.no_asha,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "finished": None,
        "wall_time_s": None,
        "data": data.source,
        "class_names": list(data.class_names),
        "params": searched_settings(space),
        "resources": plan,
        "storage_uri": args.storage if is_uri(args.storage) else None,
        "data_args": {
            k: getattr(args, k)
            for k in ("data", "class_set", "ferplus", "ferplus_mode", "demo_size", "no_cache")
        },
        "versions": versions(),
        "refit": None,
    }


def interrupted(exp: Path, args, record: dict[str, Any], what: str) -> int:
    """Save the record (and, for URI storage, the driver's files), say how to go on: 130."""
    from fer_search import cluster

    write_json(exp / RUN_FILE, record)
    location = tune_dir(exp, args)
    if location != str(exp):
        cluster.upload_driver_files(exp, location)
    print(
        f"interrupted {what}; the state is saved. Continue with: fer-search --resume {exp}",
        file=sys.stderr,
    )
    return 130


def refit_phase(exp, space, plan, refs, args, record, rows, elapsed: float):
    """Plan (once) and run the refit; the ranked rows with it, or None if it was interrupted."""
    from fer_search import cluster

    if record.get("refit") is None:
        record["refit"] = plan_refit(rows, space, elapsed, plan)
        write_json(exp / RUN_FILE, record)
    if not record["refit"]:
        return rows
    results = run_refit(exp, space, plan, refs, args, record)
    if results is None:
        return None
    location = tune_dir(exp, args)
    if location != str(exp):
        cluster.fetch_trial_files(location, exp)
    record["refit"]["done"] = True
    members = refit_members(record["refit"])
    rows = rank_rows([*rows, *refit_rows(results, members, space, exp)])
    write_leaderboard(rows, exp)
    return rows


def print_outcome(rows, final, exp: Path, wall: float, report: Path) -> int:
    """The summary lines; exit 1 when every trial failed."""
    print(summary_line(rows, exp, wall))
    if final:
        b = final["best"]
        print(
            f"test (PrivateTest, used once): best {b['test_acc'] * 100:.2f} % "
            f"(flip TTA {b['test_acc_tta'] * 100:.2f} %)"
            + (
                f"; top-{final['ensemble']['k']} ensemble "
                f"{final['ensemble']['test_acc'] * 100:.2f} %"
                if final["ensemble"]
                else ""
            )
        )
    print(f"report: {report}   TensorBoard: tensorboard --logdir {exp} --host 127.0.0.1")
    if rows and all(r["status"] in ("failed", "nan") for r in rows):
        print(
            "fer-search: every trial failed; see the error column in leaderboard.csv",
            file=sys.stderr,
        )
        return 1
    failed = sum(r["status"] in ("failed", "nan") for r in rows)
    if failed:
        print(f"warning: {failed} trial(s) failed; see leaderboard.csv", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from fer_search.cli import load_data_from_args, print_notes
    from fer_search.space import load_space

    check_counts(args)
    restore = bool(args.resume)
    if restore:
        exp, record = load_experiment(args.resume)
        space = load_space(str(exp / "space.yaml"))
        for key, value in record["data_args"].items():
            setattr(args, key, value)
        args.no_asha = record.get("no_asha", False)
        args.storage = record.get("storage_uri")  # None: Tune's state is in `exp` itself
    else:
        space = space_from_args(args)
    data = load_data_from_args(args)
    print_notes(data)
    on_cluster = bool(args.address or os.environ.get("RAY_ADDRESS"))
    if not restore and not on_cluster and args.gpus and args.gpus > local_gpu_count():
        raise UserError(
            f"--gpus {args.gpus:g} asked for {args.gpus:g} GPUs but this machine has "
            f"{local_gpu_count()}; use --gpus 0 to search on CPU, or --address to "
            f"join a GPU cluster"
        )
    if not restore:
        exp = new_experiment_dir(args, space)
    check_free_space(exp.parent)
    start_ray(args)
    import ray

    from fer_search import cluster

    cluster.check_shared_storage(exp.parent, args.storage)
    plan = (
        record["resources"]
        if restore
        else plan_resources(
            args, space.experiment, ray.cluster_resources(), cluster.node_resources()
        )
    )
    from fer_search.trainable import DatasetRefs

    refs = DatasetRefs(data.splits, data.class_names)
    if not restore:
        exp.mkdir(parents=True)
        import yaml

        (exp / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
        record = new_record(args, exp, space, data, plan)
        write_json(exp / RUN_FILE, record)
    print(
        f"searching {space.name}: {space.experiment.num_samples} trials x <= "
        f"{space.experiment.epochs} epochs on {plan['device']}, "
        f"{plan['max_concurrent']} at a time; "
        f"results in {exp}",
        flush=True,
    )
    started = time.time()
    tuner = build_tuner(exp, space, plan, refs, args, restore=restore)
    finished = None if cluster.is_uri(args.storage) else saved_search_complete(exp, space)
    if restore and finished is not None:
        results = tuner.get_results()  # nothing left to run: finalise
        record["wall_time_s"] = record.get("wall_time_s") or finished
    else:
        results = tuner.fit()
    prior_wall = float(record.get("wall_time_s") or 0.0)  # before a --resume
    location = tune_dir(exp, args)
    if location != str(exp):  # a URI: copy progress.csv & co. here for the report
        cluster.fetch_trial_files(location, exp)
    states = trial_states(location)
    rows = trial_rows(results, space, exp, states)
    write_leaderboard(rows, exp)
    record["wall_time_s"] = time.time() - started + prior_wall
    if was_interrupted(states, space, finished or time.time() - started):
        done = sum(state in ("TERMINATED", "ERROR") for state in states.values())
        return interrupted(
            exp, args, record, f"after {done} of {space.experiment.num_samples} trials"
        )
    ranked = refit_phase(exp, space, plan, refs, args, record, rows, record["wall_time_s"])
    record["wall_time_s"] = wall = time.time() - started + prior_wall
    if ranked is None:
        return interrupted(exp, args, record, "during the refit")
    rows = ranked
    final = None if args.no_final_eval else final_evaluation(rows, data, space, exp)
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_json(exp / RUN_FILE, record)
    from fer_search.report import build_report

    report = build_report(exp)
    if location != str(exp):
        cluster.upload_driver_files(exp, location)
    return print_outcome(rows, final, exp, wall, report)
