"""Figure 7: does ASHA's first rung predict the end, with and without rung annealing?

The same configurations (a seeded RandomSampler over the ASHA figure's space) are trained to
max_t twice, one after the other in this process with `engine.train`, on the ASHA figure's data:
once with one schedule over max_t, as a trial runs by default, and once with the schedule
annealed by every ASHA rung and started again after it (`experiment.rung_anneal`, i.e.
TrainConfig.anneal_at). For each: Kendall's tau between the configurations' val_acc at the first
rung (what ASHA compares) and their best val_acc over max_t (what the search selects on), with
a 95 % interval from a seeded bootstrap over the configurations and the paired difference of the
two taus; the best-at-the-end configuration's rank at the rung and the val_acc ASHA would lose
there (the best final val_acc of the configurations outside the rung's top 1/eta that beats all
inside it); and the mean and best final val_acc, what restarting the schedule costs.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from fer_search import engine
from fer_search.bench.plan import Context
from fer_search.bench.search import SAMPLED_PARAMS, SEED, asha_data, search_space

__all__ = ["ARMS", "figure_rungs", "kendall_tau", "rung_summary", "tau_intervals"]

ARMS = ("one schedule", "annealed at rungs")
RESAMPLES = 2000


def sampled_configs(trials: int, max_t: int, eta: int) -> tuple[list[dict[str, Any]], str]:
    """`trials` configurations of the ASHA figure's space, sampled by a seeded RandomSampler,
    and the anneal_at the search gives its trials under rung_anneal."""
    import optuna

    from fer_search.space import load_space_dict, sample_config
    from fer_search.tuning.schedulers import anneal_epochs

    raw = search_space("bench-rungs", trials, max_t, SAMPLED_PARAMS, grace_period=1,
                       reduction_factor=eta, rung_anneal=True)  # fmt: skip
    space = load_space_dict(raw)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SEED))
    return [sample_config(space, study.ask()) for _ in range(trials)], anneal_epochs(space)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (scipy; ties counted as such); NaN when either side is constant."""
    from scipy.stats import kendalltau

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(kendalltau(x, y).statistic)


def tau_intervals(
    rung: dict[str, np.ndarray], final: dict[str, np.ndarray], seed: int = SEED
) -> dict[str, Any]:
    """Each arm's tau with its 95 % interval, and the paired difference (annealed minus one
    schedule), from the same bootstrap resamples of the configurations (percentiles; resamples
    where a side is constant are left out)."""
    n = len(next(iter(final.values())))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(RESAMPLES):
        pick = rng.integers(0, n, n)
        for arm in ARMS:
            draws[arm].append(kendall_tau(rung[arm][pick], final[arm][pick]))
    boot = {arm: np.asarray(values) for arm, values in draws.items()}
    diff = boot[ARMS[1]] - boot[ARMS[0]]

    def interval(values: np.ndarray) -> list[float] | None:
        values = values[np.isfinite(values)]
        if len(values) < RESAMPLES // 2:
            return None
        return [round(float(v), 3) for v in np.percentile(values, [2.5, 97.5])]

    out: dict[str, Any] = {}
    for arm in ARMS:
        out[arm] = {"tau": kendall_tau(rung[arm], final[arm]), "tau_ci95": interval(boot[arm])}
    out["difference"] = out[ARMS[1]]["tau"] - out[ARMS[0]]["tau"]
    out["difference_ci95"] = interval(diff)
    return out


def rung_summary(at_rung: np.ndarray, final: np.ndarray, eta: int) -> dict[str, Any]:
    """What ASHA's first rung does to these configurations: those it keeps (the top 1/eta by
    val_acc there), where the best-at-the-end one ranks at the rung, and the final val_acc lost
    when it is not kept (the best final of all minus the best final of those kept)."""
    kept = max(1, len(final) // eta)
    order = np.argsort(-at_rung, kind="stable")
    best = int(np.argmax(final))
    rank = int(np.flatnonzero(order == best)[0]) + 1
    lost = float(final.max() - final[order[:kept]].max())
    return {"kept": kept, "best_rank_at_rung": rank, "best_kept": rank <= kept, "lost": lost}


def train_arm(ctx: Context, data: Any, configs: list[dict[str, Any]], max_t: int,
              anneal_at: str) -> list[list[float]]:  # fmt: skip
    """Each configuration trained to max_t; its val_acc per epoch."""
    from fer_search.tuning.trainable import trial_config

    threads = os.cpu_count() or 1
    constants = {"epochs": max_t, "seed": SEED, "device": ctx.device.type, "threads": threads,
                 "class_set": ctx.options.class_set or "all", "anneal_at": anneal_at}  # fmt: skip
    curves = []
    for config in configs:
        cfg = trial_config({**constants, **config})
        result = engine.train(cfg, data.splits["train"], data.splits["val"])
        curves.append([h.val_acc for h in result.history])
    return curves


def figure_rungs(ctx: Context) -> dict[str, Any]:
    """The figure: both arms over the same configurations, the first rung at epoch 1."""
    trials, max_t, eta = ctx.plan.rungs
    configs, anneal_at = sampled_configs(trials, max_t, eta)
    rungs = [int(r) for r in anneal_at.split(",") if r]
    data, data_words, fraction = asha_data(ctx)
    curves = {
        ARMS[0]: train_arm(ctx, data, configs, max_t, ""),
        ARMS[1]: train_arm(ctx, data, configs, max_t, anneal_at),
    }
    rung = {arm: np.array([c[0] for c in cs]) for arm, cs in curves.items()}  # epoch 1
    final = {arm: np.array([max(c) for c in cs]) for arm, cs in curves.items()}
    taus = tau_intervals(rung, final)
    arms = {
        arm: {
            **taus[arm],
            **rung_summary(rung[arm], final[arm], eta),
            "tau_by_rung": {  # every rung before max_t, without intervals
                str(r): kendall_tau(np.array([c[r - 1] for c in curves[arm]]), final[arm])
                for r in rungs
            },
            "mean_final_val_acc": float(final[arm].mean()),
            "best_final_val_acc": float(final[arm].max()),
            "val_acc_per_epoch": [[round(v, 4) for v in c] for c in curves[arm]],
        }
        for arm in ARMS
    }
    before, after = arms[ARMS[0]], arms[ARMS[1]]
    ci = taus["difference_ci95"]
    return {
        "figure": "rung fairness",
        "arch": "simple_cnn",
        "trials": trials,
        "max_t": max_t,
        "grace_period": 1,
        "reduction_factor": eta,
        "anneal_at": anneal_at,
        "train_fraction": fraction,
        "data": data_words,
        "configs": configs,
        "arms": arms,
        "tau_difference": taus["difference"],
        "tau_difference_ci95": ci,
        "sampler": f"RandomSampler(seed={SEED}): both arms train the same configurations",
        "goal": "tau higher annealed",
        "met": None if ci is None else ci[0] > 0,
        "summary": f"tau(rung 1, final) {before['tau']:.2f} -> {after['tau']:.2f} "
        f"(diff {taus['difference']:+.2f}{fmt_interval(ci)}); mean final "
        f"{before['mean_final_val_acc']:.1%} -> {after['mean_final_val_acc']:.1%}",
    }


def fmt_interval(interval: list[float] | None) -> str:
    return f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else ""
