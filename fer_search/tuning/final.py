"""The final evaluation: the best trial, and the top-k ensemble, on the test split, once.

Models are chosen on PublicTest (val) before PrivateTest (test) is looked at. The predictions
are made where the GPUs are: when the search's trials ran on GPUs and this driver has no CUDA
device (a CPU-only head node), they run as a Ray task holding one GPU on a worker, reading the
object-store copy of the data (the test split is put there only for this step). Otherwise they
run here, as before. `final.json` records where: `evaluated_on`.

Every accuracy and macro-F1 in final.json has its 95 % interval beside it (`<key>_ci95`), and
`comparisons` holds the best trial against the runner-up and against the ensemble on the same
val and test images (fer_search.stats; `ci_method` says how).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_search.tuning.experiment_dir import write_json
from fer_search.tuning.results import selectable

if TYPE_CHECKING:
    from fer_search.tuning.resources import ResourcePlan
    from fer_search.tuning.results import LeaderboardRow
    from fer_search.tuning.search_run import SearchRun

__all__ = [
    "SELECTION_RULE",
    "Member",
    "evaluate_members",
    "final_evaluation",
    "remote_evaluation",
]

SELECTION_RULE = (
    "trials ranked by best val_acc on PublicTest (the val split); PrivateTest (the test split) "
    "is used once, here, after selection"
)
TTA_MODES = ("none", "flip", "tencrop")  # fewest views first: a tie keeps the cheaper one


def fits(probs: np.ndarray | None, split: Any) -> bool:
    """Stored probabilities are of this split's images (a checkpoint of other val data is not)."""
    return probs is not None and tuple(probs.shape) == (len(split.labels), len(split.class_names))


@dataclass
class Member:
    """One trial of the pool as the final evaluation holds it: its val probabilities (stored by
    its trial, or computed when it had to be loaded), and for a loaded member its test ones."""

    index: int  # its place in the pool (0: the best trial)
    val: np.ndarray
    test: np.ndarray | None = None
    test_tta: np.ndarray | None = None
    tta: dict[str, Any] | None = None  # the best trial's TTA choice (tta_choice)
    loaded: Any = None  # the best trial's LoadedModel (best/best.pt is written from it)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reads:
    """What the final evaluation read: val-probability files, and whole checkpoints loaded."""

    val_prob_files: int = 0
    val_prob_bytes: int = 0
    checkpoints: int = 0
    checkpoint_bytes: int = 0

    def add(self, other: Reads) -> None:
        for name in ("val_prob_files", "val_prob_bytes", "checkpoints", "checkpoint_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def record(self, pool: int) -> dict[str, Any]:
        return {
            "pool": pool,
            "val_prob_files": self.val_prob_files,
            "checkpoints_loaded": self.checkpoints,
            "bytes_read": self.val_prob_bytes + self.checkpoint_bytes,
            "checkpoint_bytes": self.checkpoint_bytes,
        }


def stored_val_probs(checkpoints: list[Any], val: Any) -> tuple[list[np.ndarray | None], Reads]:
    """Each checkpoint's best-epoch val probabilities from the small file beside its weights
    (None where there is none, or of other images: that member must be loaded)."""
    from fer_search.tuning.trainers import read_val_probs

    reads, found = Reads(), []
    for checkpoint in checkpoints:
        probs, size = read_val_probs(checkpoint)
        reads.val_prob_files += size > 0
        reads.val_prob_bytes += size
        found.append(probs.astype(np.float32) if probs is not None and fits(probs, val) else None)
    return found, reads


def evaluate_members(
    trainer: Any,
    checkpoints: dict[int, Any],
    val: Any,
    test: Any,
    device: str,
    top_k: int = 0,
) -> tuple[dict[int, Member], Reads]:
    """Load each checkpoint (by pool index) and predict: val (unless its trial stored it) and
    test; for the top-k ensemble (index < top_k) also flipped test; for the best trial (index 0)
    the TTA mode val picks (`tta_choice`), and its model is kept for best/best.pt."""
    members, reads = {}, Reads()
    for index, checkpoint in sorted(checkpoints.items()):
        loaded = trainer.load(checkpoint, device)
        reads.checkpoints += 1
        reads.checkpoint_bytes += loaded.bytes_read
        stored = loaded.stored_val_probs
        member = Member(
            index=index,
            val=stored.astype(np.float32)
            if stored is not None and fits(stored, val)
            else trainer.predict(loaded, val, device),
            test=trainer.predict(loaded, test, device),
            config=dict(loaded.payload.get("config") or {}),
        )
        if index < max(1, top_k):
            member.test_tta = trainer.predict(loaded, test, device, tta="flip")
        if index == 0:
            member.tta = tta_choice(trainer, loaded, val, test, device, member.val)
            # best/best.pt is written from the payload; the model (on a worker's GPU) stays there
            member.loaded = dataclasses.replace(loaded, model=None)
        members[index] = member
        del loaded
    return members, reads


def tta_choice(
    trainer: Any, loaded: Any, val: Any, test: Any, device: str, plain: np.ndarray
) -> dict[str, Any]:
    """The test-time augmentation PublicTest picks for the best model (none, flip or
    ten-crop; ties go to fewer views) and its test probabilities: test is read once, with
    the chosen mode."""
    val_acc = {"none": accuracy(plain, val.labels)}
    for mode in TTA_MODES[1:]:
        val_acc[mode] = accuracy(trainer.predict(loaded, val, device, tta=mode), val.labels)
    chosen = max(TTA_MODES, key=lambda mode: (val_acc[mode], -TTA_MODES.index(mode)))
    probs = trainer.predict(loaded, test, device, tta=chosen)
    return {"chosen": chosen, "val_acc": val_acc, "test_probs": probs}


def evaluated_here(device: str) -> dict[str, Any]:
    """`evaluated_on` for an evaluation in the driver's process."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"node": node, "device": device, "gpu_ids": []}


def remote_evaluation(
    trainer: Any, checkpoints: dict[int, Any], refs: Any, test: Any, top_k: int
) -> tuple[dict[int, Member], Reads, dict[str, Any]]:
    """`evaluate_members` as a Ray task with one GPU (on a worker); the test split is put in the
    object store for it alone and released after."""
    import ray

    test_ref = ray.put(test.images)

    @ray.remote(num_gpus=1, num_cpus=1, max_retries=1)
    def evaluate(
        checkpoints: dict[int, Any], refs: Any, test_images: Any, labels: Any, names: Any
    ) -> tuple[dict[int, Member], Reads, dict[str, Any]]:
        from types import SimpleNamespace

        import ray as _ray

        from fer_search.tuning.devices import device_for_gpu_work

        device = device_for_gpu_work()
        val = refs.get("val")
        test = SimpleNamespace(images=test_images, labels=labels, class_names=names)
        members, reads = evaluate_members(trainer, checkpoints, val, test, device, top_k)
        where = {
            "node": _ray.get_runtime_context().get_node_id(),
            "device": device,
            "gpu_ids": [str(i) for i in _ray.get_gpu_ids()],
        }
        return members, reads, where

    try:
        return ray.get(evaluate.remote(checkpoints, refs, test_ref, test.labels, test.class_names))
    finally:
        del test_ref


def needs_a_worker(plan: ResourcePlan, trainer: Any) -> bool:
    """Trials ran on GPUs and this process has no CUDA device: evaluate on a GPU worker."""
    if plan.get("device") != "cuda":
        return False
    if trainer.kind != "engine":  # a simulated model runs anywhere, but goes where a real one would
        return True
    import torch

    return not torch.cuda.is_available()


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def final_evaluation(search: SearchRun, rows: list[LeaderboardRow]) -> dict[str, Any] | None:
    """Evaluate the best trial, the top-k ensemble and the ensemble selected from every trial
    with a checkpoint (the pool) on the test split, once; write best/best.pt, final.json and
    the test confusion matrix. The ensemble is selected from the val probabilities each trial
    stored beside its checkpoint; only the checkpoints of the models used are loaded (and those
    of trials that stored none), and final.json's `reads` counts them."""
    from fer_search import ensemble

    data, exp, trainer, plan, refs = (
        search.data,
        search.exp,
        search.trainer,
        search.plan,
        search.refs,
    )
    pool = [r for r in selectable(rows) if r.checkpoint is not None]
    if not pool or "test" not in data.splits:
        return None
    top_k = search.space.experiment.top_k
    val, test = data.splits["val"], data.splits["test"]
    checkpoints = [row.checkpoint for row in pool]
    stored, reads = stored_val_probs(checkpoints, val)
    # trials that stored no val probabilities are loaded first: selection needs every member's
    members, loaded_reads, where = evaluate(
        trainer, plan, refs, val, test, top_k,
        {i: checkpoints[i] for i, probs in enumerate(stored) if probs is None},
    )  # fmt: skip
    reads.add(loaded_reads)
    val_probs = [members[i].val if probs is None else probs for i, probs in enumerate(stored)]
    choice = ensemble.choose_ensemble(val_probs, val.labels, top_k)
    used = models_used(choice, top_k, len(pool))
    more, more_reads, where = evaluate(
        trainer, plan, refs, val, test, top_k,
        {i: checkpoints[i] for i in used if i not in members},
    )  # fmt: skip
    members.update(more)
    reads.add(more_reads)
    for index, member in members.items():
        member.val = val_probs[index]
    best = members[0]
    (exp / "best").mkdir(exist_ok=True)
    saved = trainer.save_best(best.loaded, exp / "best")
    ranked = [members[i] for i in range(min(top_k, len(pool)))] or [best]
    final = final_record(ranked, pool, val, test)
    final["best"]["checkpoint"] = f"best/{saved}"
    final["tta"] = tta_record(best.tta or {}, test)
    final["selected_ensemble"] = selected_ensemble(
        choice, val_probs, members, pool, val, test, top_k
    )
    final["evaluated_on"] = where
    final["reads"] = reads.record(len(pool))
    write_json(exp / "final.json", final)
    write_confusion(exp, final, test.class_names)
    return final


def models_used(choice: dict[str, Any], top_k: int, pool: int) -> list[int]:
    """Pool indices whose test predictions final.json needs: the best trial, the top-k and the
    members of the ensemble val chose (the candidates it did not choose are scored on val only:
    a bagged selection over a thousand trials can weight hundreds of them)."""
    used = set(range(min(max(1, top_k), pool)))
    used.update(int(i) for i in np.flatnonzero(choice["weights"]))
    return sorted(used)


def evaluate(
    trainer: Any,
    plan: ResourcePlan,
    refs: Any,
    val: Any,
    test: Any,
    top_k: int,
    checkpoints: dict[int, Any],
) -> tuple[dict[int, Member], Reads, dict[str, Any]]:
    """evaluate_members where the GPUs are (remote_evaluation) or here."""
    if not checkpoints:
        return {}, Reads(), {}
    if needs_a_worker(plan, trainer):
        return remote_evaluation(trainer, checkpoints, refs, test, top_k)
    device = trainer.evaluation_device()
    members, reads = evaluate_members(trainer, checkpoints, val, test, device, top_k)
    return members, reads, evaluated_here(device)


def final_record(
    members: list[Member], pool: list[LeaderboardRow], val: Any, test: Any
) -> dict[str, Any]:
    """final.json's figures: the best member, the ensemble of all members (when more than one)
    and their paired comparisons, each accuracy with its 95 % interval (fer_search.stats).
    `pool[member.index]` is a member's leaderboard row."""
    from fer_search import stats
    from fer_search.evaluation import classification_metrics

    best = members[0]
    probs = [as_probs(m) for m in members]
    metrics = classification_metrics(probs[0]["test"], test.labels, test.class_names)
    final: dict[str, Any] = {
        "selection": SELECTION_RULE,
        "ci_method": stats.METHOD,
        "best": {
            "trial_id": pool[best.index]["trial_id"],
            **scores(probs[0], val, test, metrics),
            "checkpoint": "best/best.pt",
            "config": best.config,
            "metrics": metrics,
        },
        "ensemble": None,
        "comparisons": {},
    }
    if len(members) > 1:
        mean = {k: np.mean([p[k] for p in probs], axis=0) for k in ("val", "test", "test_tta")}
        ensemble_metrics = classification_metrics(mean["test"], test.labels, test.class_names)
        ids = [pool[m.index]["trial_id"] for m in members]
        final["ensemble"] = {"k": len(members), "trial_ids": ids}
        final["ensemble"].update(scores(mean, val, test, ensemble_metrics))
        final["comparisons"] = {
            "best_vs_runner_up": comparison(ids[0], ids[1], probs[0], probs[1], val, test),
            "best_vs_ensemble": comparison(ids[0], ids, probs[0], mean, val, test),
        }
    return final


def as_probs(member: Member, tested_only: bool = False) -> dict[str, np.ndarray]:
    """A loaded member's probabilities (a top-k member's with flipped test too)."""
    assert member.test is not None, "a member used on test is loaded"
    if tested_only:
        return {"val": member.val, "test": member.test}
    assert member.test_tta is not None, "a top-k member is tested with flips too"
    return {"val": member.val, "test": member.test, "test_tta": member.test_tta}


def scores(probs: dict[str, np.ndarray], val: Any, test: Any, metrics: dict) -> dict[str, Any]:
    """val_acc, test_acc, test_acc_flip (with flip TTA) and test_f1 of one model (or ensemble),
    each followed by its 95 % interval; `metrics` is classification_metrics of probs["test"]."""
    from fer_search import stats

    return {
        "val_acc": accuracy(probs["val"], val.labels),
        "val_acc_ci95": stats.accuracy_ci(val.labels, probs["val"].argmax(1)),
        "test_acc": metrics["accuracy"],
        "test_acc_ci95": metrics["accuracy_ci95"],
        "test_acc_flip": accuracy(probs["test_tta"], test.labels),
        "test_acc_flip_ci95": stats.accuracy_ci(test.labels, probs["test_tta"].argmax(1)),
        "test_f1": metrics["macro_f1"],
        "test_f1_ci95": metrics["macro_f1_ci95"],
    }


def comparison(
    a: Any,
    b: Any,
    probs_a: dict[str, np.ndarray],
    probs_b: dict[str, np.ndarray],
    val: Any,
    test: Any,
) -> dict[str, Any]:
    """A against B on the same images of val and of test (no TTA): `difference` is A's
    accuracy minus B's (stats.paired_comparison). a, b: trial ids (a list for an ensemble)."""
    from fer_search import stats

    def on(split: str, labels: np.ndarray) -> dict[str, Any]:
        return stats.paired_comparison(labels, probs_a[split].argmax(1), probs_b[split].argmax(1))

    return {"a": a, "b": b, "val": on("val", val.labels), "test": on("test", test.labels)}


def tta_record(choice: dict[str, Any], test: Any) -> dict[str, Any]:
    from fer_search import stats

    pred = choice["test_probs"].argmax(1)
    return {
        "rule": "the mode with the best val_acc (PublicTest); ties go to fewer views",
        "chosen": choice["chosen"],
        "val_acc": choice["val_acc"],
        "test_acc": float((pred == test.labels).mean()),
        "test_acc_ci95": stats.accuracy_ci(test.labels, pred),
    }


def selected_ensemble(
    choice: dict[str, Any],
    val_probs: list[np.ndarray],
    members: dict[int, Member],
    pool: list[LeaderboardRow],
    val: Any,
    test: Any,
    top_k: int,
) -> dict[str, Any]:
    """Ensemble selection with replacement over the whole pool, and its bagged form, against
    the top-k average, chosen on val (fer_search.ensemble.choose_ensemble: `choice`); the one
    chosen is scored on test, once, and compared there with the top-k average; the others
    on val only (their members are not loaded)."""
    from fer_search import ensemble, stats

    def combined(weights: np.ndarray, split: str) -> np.ndarray:
        used = np.flatnonzero(weights)
        if split == "val":  # every trial's, from its file
            probs = [val_probs[int(i)] for i in used]
        else:  # only the loaded members have test probabilities
            probs = [as_probs(members[int(i)], tested_only=True)["test"] for i in used]
        return np.tensordot(weights[used], np.stack(probs), 1)

    def scored(weights: np.ndarray, on_test: bool = True) -> dict[str, Any]:
        used = np.flatnonzero(weights)
        val_pred = combined(weights, "val").argmax(1)
        found = {
            "members": [pool[int(i)]["trial_id"] for i in used],
            "weights": [round(float(weights[i]), 4) for i in used],
            "val_acc": float((val_pred == val.labels).mean()),
            "test_acc": None,  # a candidate val did not choose is not loaded, nor tested
        }
        if on_test:
            test_pred = combined(weights, "test").argmax(1)
            found["test_acc"] = float((test_pred == test.labels).mean())
            found["test_acc_ci95"] = stats.accuracy_ci(test.labels, test_pred)
        return found

    picked = combined(choice["weights"], "test")
    average = combined(choice["top_k_weights"], "test")
    return {
        "vs_top_k": stats.paired_comparison(test.labels, picked.argmax(1), average.argmax(1)),
        "method": "greedy forward selection with replacement on val (Caruana et al., 2004) "
        f"over {len(pool)} trials, and its bagged form ({ensemble.BAGS} seeded bags of "
        f"{ensemble.BAG_FRACTION:.0%} of them, weights averaged), against the "
        f"top-{min(top_k, len(pool))} average; the one with the best val_acc is chosen",
        "chosen": choice["chosen"],
        **scored(choice["weights"]),
        "selection": scored(choice["selection_weights"], choice["chosen"] == "selection"),
        "bagged": scored(choice["bagged_weights"], choice["chosen"] == "bagged"),
        "top_k_val_acc": choice["top_k_val_acc"],
    }


def write_confusion(exp: Path, final: dict[str, Any], class_names: Any) -> None:
    """confusion_test.png (the report's; TensorBoard holds the trials' curves only: a test
    group there would sort before `train` and `val` and keep `val` folded)."""
    from fer_search.evaluation import plot_confusion

    metrics = final["best"]["metrics"]
    title = f"best trial {final['best']['trial_id']} on test"
    plot_confusion(metrics["confusion_matrix"], class_names, exp / "confusion_test.png", title)
