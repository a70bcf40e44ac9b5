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

from pathlib import Path
from typing import Any

import numpy as np

from fer_search.tuning.experiment import write_json
from fer_search.tuning.results import selectable

__all__ = ["SELECTION_RULE", "evaluate_members", "final_evaluation", "remote_evaluation"]

SELECTION_RULE = (
    "trials ranked by best val_acc on PublicTest (the val split); PrivateTest (the test split) "
    "is used once, here, after selection"
)
TTA_MODES = ("none", "flip", "tencrop")  # fewest views first: a tie keeps the cheaper one
RESUME_ONLY = (
    "optimizer",
    "best_state_dict",
    "ema_state_dict",
    "best_is",
    "scaler",
    "best_val_probs",
)


def load_trial_model(checkpoint: Any, device: Any) -> tuple[dict[str, Any], Any, Any]:
    """A trial checkpoint's best weights as a compact payload, its model, and the best epoch's
    val probabilities the trial stored (a float16 tensor; None in checkpoints from before)."""
    from fer_search import engine
    from fer_search.tuning.trainable import CHECKPOINT_FILE

    with checkpoint.as_directory() as directory:
        payload = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    payload["state_dict"] = engine.best_state_dict(payload)
    stored = payload.get("best_val_probs")
    payload = {k: v for k, v in payload.items() if k not in RESUME_ONLY}
    return payload, engine.model_from_checkpoint(payload, device), stored


def val_probs(stored: Any, model: Any, val: Any, where: Any) -> np.ndarray:
    """A member's val probabilities: those its trial stored at its best epoch, else (a
    checkpoint from before they were kept, or of other val images) its model's, computed."""
    from fer_search import engine

    if stored is not None and tuple(stored.shape) == (len(val.labels), len(val.class_names)):
        return stored.float().numpy()
    return engine.predict_probs(model, val.images, device=where)


def evaluate_members(
    checkpoints: list[Any], val: Any, test: Any, device: str, top_k: int = 0
) -> list[dict]:
    """Each checkpoint's probabilities on val (those its trial stored: val_probs) and test; for
    the first `top_k` (the top-k ensemble) also on flipped test; for the first (the best trial)
    its weights and the TTA mode val picks (`tta_choice`). The others keep only their config."""
    from fer_search import engine

    where = engine.resolve_device(device)
    members = []
    for i, checkpoint in enumerate(checkpoints):
        payload, model, stored = load_trial_model(checkpoint, where)
        member: dict[str, Any] = {
            "payload": payload if i == 0 else {"config": payload["config"]},
            "val": val_probs(stored, model, val, where),
            "test": engine.predict_probs(model, test.images, device=where),
        }
        if i < max(1, top_k):
            member["test_tta"] = engine.predict_probs(model, test.images, device=where, tta="flip")
        if i == 0:
            member["tta"] = tta_choice(model, val, test, where, member["val"])
        members.append(member)
        del model
    return members


def tta_choice(model: Any, val: Any, test: Any, where: Any, plain: np.ndarray) -> dict:
    """The test-time augmentation PublicTest picks for the best model (none, flip or
    ten-crop; ties go to fewer views) and its test probabilities: test is read once, with
    the chosen mode."""
    from fer_search import engine

    val_acc = {"none": accuracy(plain, val.labels)}
    for mode in TTA_MODES[1:]:
        probs = engine.predict_probs(model, val.images, device=where, tta=mode)
        val_acc[mode] = accuracy(probs, val.labels)
    chosen = max(TTA_MODES, key=lambda mode: (val_acc[mode], -TTA_MODES.index(mode)))
    probs = engine.predict_probs(model, test.images, device=where, tta=chosen)
    return {"chosen": chosen, "val_acc": val_acc, "test_probs": probs}


def evaluated_here(device: str) -> dict[str, Any]:
    """`evaluated_on` for an evaluation in the driver's process."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"node": node, "device": device, "gpu_ids": []}


def remote_evaluation(
    checkpoints: list[Any], refs: Any, test: Any, top_k: int
) -> tuple[list[dict], dict]:
    """`evaluate_members` as a Ray task with one GPU (on a worker); the test split is put in the
    object store for it alone and released after."""
    import ray

    test_ref = ray.put(test.images)

    @ray.remote(num_gpus=1, num_cpus=1, max_retries=1)
    def evaluate(
        checkpoints: list[Any], refs: Any, test_images: Any, labels: Any
    ) -> tuple[list, dict]:
        from types import SimpleNamespace

        import ray as _ray

        from fer_search.tuning.devices import device_for_gpu_work

        device = device_for_gpu_work()
        val = refs.get("val")
        test = SimpleNamespace(images=test_images, labels=labels)
        members = evaluate_members(checkpoints, val, test, device, top_k)
        where = {
            "node": _ray.get_runtime_context().get_node_id(),
            "device": device,
            "gpu_ids": [str(i) for i in _ray.get_gpu_ids()],
        }
        return members, where

    try:
        return ray.get(evaluate.remote(checkpoints, refs, test_ref, test.labels))
    finally:
        del test_ref


def needs_a_worker(plan: dict[str, Any]) -> bool:
    """Trials ran on GPUs and this process has no CUDA device: evaluate on a GPU worker."""
    import torch

    return plan.get("device") == "cuda" and not torch.cuda.is_available()


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def final_evaluation(
    rows: list[dict[str, Any]], data: Any, space: Any, exp: Path, plan: dict[str, Any], refs: Any
) -> dict[str, Any] | None:
    """Evaluate the best trial, the top-k ensemble and the ensemble selected from every trial
    with a checkpoint (the pool) on the test split, once; write best/best.pt, final.json and
    the test confusion matrix."""
    from fer_search import engine

    pool = [r for r in selectable(rows) if r["_checkpoint"] is not None]
    if not pool or "test" not in data.splits:
        return None
    top_k = space.experiment.top_k
    val, test = data.splits["val"], data.splits["test"]
    checkpoints = [row["_checkpoint"] for row in pool]
    if needs_a_worker(plan):
        members, where = remote_evaluation(checkpoints, refs, test, top_k)
    else:
        device = engine.resolve_device("auto").type
        members = evaluate_members(checkpoints, val, test, device, top_k)
        where = evaluated_here(device)
    for row, member in zip(pool, members, strict=True):
        member["row"] = row
    (exp / "best").mkdir(exist_ok=True)
    engine.save_checkpoint(exp / "best" / "best.pt", members[0]["payload"])
    final = final_record(members[:top_k], val, test)
    final["tta"] = tta_record(members[0]["tta"], test)
    final["selected_ensemble"] = selected_ensemble(members, val, test, top_k)
    final["evaluated_on"] = where
    write_json(exp / "final.json", final)
    write_confusion(exp, final, test.class_names)
    return final


def final_record(members: list[dict[str, Any]], val: Any, test: Any) -> dict[str, Any]:
    """final.json's figures: the best member, the ensemble of all members (when more than one)
    and their paired comparisons, each accuracy with its 95 % interval (fer_search.stats)."""
    from fer_search import stats
    from fer_search.evaluation import classification_metrics

    best = members[0]
    metrics = classification_metrics(best["test"], test.labels, test.class_names)
    final: dict[str, Any] = {
        "selection": SELECTION_RULE,
        "ci_method": stats.METHOD,
        "best": {
            "trial_id": best["row"]["trial_id"],
            **scores(best, val, test, metrics),
            "checkpoint": "best/best.pt",
            "config": best["payload"]["config"],
            "metrics": metrics,
        },
        "ensemble": None,
        "comparisons": {},
    }
    if len(members) > 1:
        mean = {k: np.mean([m[k] for m in members], axis=0) for k in ("val", "test", "test_tta")}
        ensemble_metrics = classification_metrics(mean["test"], test.labels, test.class_names)
        ids = [m["row"]["trial_id"] for m in members]
        final["ensemble"] = {"k": len(members), "trial_ids": ids}
        final["ensemble"].update(scores(mean, val, test, ensemble_metrics))
        final["comparisons"] = {
            "best_vs_runner_up": comparison(ids[0], ids[1], best, members[1], val, test),
            "best_vs_ensemble": comparison(ids[0], ids, best, mean, val, test),
        }
    return final


def scores(probs: dict[str, np.ndarray], val: Any, test: Any, metrics: dict) -> dict[str, Any]:
    """val_acc, test_acc, test_acc_tta and test_f1 of one model (or ensemble), each followed
    by its 95 % interval; `metrics` is classification_metrics of probs["test"]."""
    from fer_search import stats

    return {
        "val_acc": accuracy(probs["val"], val.labels),
        "val_acc_ci95": stats.accuracy_ci(val.labels, probs["val"].argmax(1)),
        "test_acc": metrics["accuracy"],
        "test_acc_ci95": metrics["accuracy_ci95"],
        "test_acc_tta": accuracy(probs["test_tta"], test.labels),
        "test_acc_tta_ci95": stats.accuracy_ci(test.labels, probs["test_tta"].argmax(1)),
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
    members: list[dict[str, Any]], val: Any, test: Any, top_k: int
) -> dict[str, Any]:
    """Ensemble selection with replacement over the whole pool, and its bagged form, against
    the top-k average, chosen on val (fer_search.ensemble); each scored on test, once."""
    from fer_search import ensemble, stats

    ids = [m["row"]["trial_id"] for m in members]
    choice = ensemble.choose_ensemble([m["val"] for m in members], val.labels, top_k)

    def scored(weights: np.ndarray) -> dict[str, Any]:
        used = np.flatnonzero(weights)
        pred = {
            split: np.tensordot(weights, np.stack([m[split] for m in members]), 1).argmax(1)
            for split in ("val", "test")
        }
        return {
            "members": [ids[i] for i in used],
            "weights": [round(float(weights[i]), 4) for i in used],
            "val_acc": float((pred["val"] == val.labels).mean()),
            "test_acc": float((pred["test"] == test.labels).mean()),
            "test_acc_ci95": stats.accuracy_ci(test.labels, pred["test"]),
        }

    picked = np.tensordot(choice["weights"], np.stack([m["test"] for m in members]), 1)
    average = np.tensordot(choice["top_k_weights"], np.stack([m["test"] for m in members]), 1)
    return {
        "vs_top_k": stats.paired_comparison(test.labels, picked.argmax(1), average.argmax(1)),
        "method": "greedy forward selection with replacement on val (Caruana et al., 2004) "
        f"over {len(members)} trials, and its bagged form ({ensemble.BAGS} seeded bags of "
        f"{ensemble.BAG_FRACTION:.0%} of them, weights averaged), against the "
        f"top-{min(top_k, len(members))} average; the one with the best val_acc is chosen",
        "chosen": choice["chosen"],
        **scored(choice["weights"]),
        "selection": scored(choice["selection_weights"]),
        "bagged": scored(choice["bagged_weights"]),
        "top_k_val_acc": choice["top_k_val_acc"],
    }


def write_confusion(exp: Path, final: dict[str, Any], class_names: Any) -> None:
    """confusion_test.png (the report's; TensorBoard holds the trials' curves only: a test
    group there would sort before `train` and `val` and keep `val` folded)."""
    from fer_search.evaluation import plot_confusion

    metrics = final["best"]["metrics"]
    title = f"best trial {final['best']['trial_id']} on test"
    plot_confusion(metrics["confusion_matrix"], class_names, exp / "confusion_test.png", title)
