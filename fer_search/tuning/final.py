"""The final evaluation: the best trial, and the top-k ensemble, on the test split, once.

Models are chosen on PublicTest (val) before PrivateTest (test) is looked at. The predictions
are made where the GPUs are: when the search's trials ran on GPUs and this driver has no CUDA
device (a CPU-only head node), they run as a Ray task holding one GPU on a worker, reading the
object-store copy of the data (the test split is put there only for this step). Otherwise they
run here, as before. `final.json` records where: `evaluated_on`.
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
RESUME_ONLY = ("optimizer", "best_state_dict", "ema_state_dict", "best_is", "scaler")


def load_trial_model(checkpoint: Any, device: Any) -> tuple[dict[str, Any], Any]:
    from fer_search import engine
    from fer_search.tuning.trainable import CHECKPOINT_FILE

    with checkpoint.as_directory() as directory:
        payload = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    payload["state_dict"] = engine.best_state_dict(payload)
    payload = {k: v for k, v in payload.items() if k not in RESUME_ONLY}
    return payload, engine.model_from_checkpoint(payload, device)


def evaluate_members(checkpoints: list[Any], val: Any, test: Any, device: str) -> list[dict]:
    """Each checkpoint's best weights and its probabilities on val, test and flipped test."""
    from fer_search import engine

    where = engine.resolve_device(device)
    members = []
    for checkpoint in checkpoints:
        payload, model = load_trial_model(checkpoint, where)
        members.append(
            {
                "payload": payload,
                "val": engine.predict_probs(model, val.images, device=where),
                "test": engine.predict_probs(model, test.images, device=where),
                "test_tta": engine.predict_probs(model, test.images, device=where, tta="flip"),
            }
        )
        del model
    return members


def evaluated_here(device: str) -> dict[str, Any]:
    """`evaluated_on` for an evaluation in the driver's process."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"node": node, "device": device, "gpu_ids": []}


def remote_evaluation(checkpoints: list[Any], refs: Any, test: Any) -> tuple[list[dict], dict]:
    """`evaluate_members` as a Ray task with one GPU (on a worker); the test split is put in the
    object store for it alone and released after."""
    import ray

    test_ref = ray.put(test.images)

    @ray.remote(num_gpus=1, num_cpus=1, max_retries=1)
    def evaluate(checkpoints: list[Any], refs: Any, test_images: Any) -> tuple[list, dict]:
        from types import SimpleNamespace

        import ray as _ray

        from fer_search.tuning.devices import device_for_gpu_work

        device = device_for_gpu_work()
        val = refs.get("val")
        members = evaluate_members(checkpoints, val, SimpleNamespace(images=test_images), device)
        where = {
            "node": _ray.get_runtime_context().get_node_id(),
            "device": device,
            "gpu_ids": [str(i) for i in _ray.get_gpu_ids()],
        }
        return members, where

    try:
        return ray.get(evaluate.remote(checkpoints, refs, test_ref))
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
    """Evaluate the best trial, and the top-k ensemble, on the test split, once; write
    best/best.pt, final.json and the test confusion matrix."""
    from fer_search import engine

    ranked = [r for r in selectable(rows) if r["_checkpoint"] is not None]
    ranked = ranked[: space.experiment.top_k]
    if not ranked or "test" not in data.splits:
        return None
    val, test = data.splits["val"], data.splits["test"]
    checkpoints = [row["_checkpoint"] for row in ranked]
    if needs_a_worker(plan):
        members, where = remote_evaluation(checkpoints, refs, test)
    else:
        device = engine.resolve_device("auto").type
        members, where = evaluate_members(checkpoints, val, test, device), evaluated_here(device)
    for row, member in zip(ranked, members, strict=True):
        member["row"] = row
    (exp / "best").mkdir(exist_ok=True)
    engine.save_checkpoint(exp / "best" / "best.pt", members[0]["payload"])
    final = final_record(members, val, test)
    final["evaluated_on"] = where
    write_json(exp / "final.json", final)
    write_confusion(exp, final, test.class_names)
    return final


def final_record(members: list[dict[str, Any]], val: Any, test: Any) -> dict[str, Any]:
    from fer_search.evaluation import classification_metrics

    best = members[0]
    metrics = classification_metrics(best["test"], test.labels, test.class_names)
    final: dict[str, Any] = {
        "selection": SELECTION_RULE,
        "best": {
            "trial_id": best["row"]["trial_id"],
            "val_acc": accuracy(best["val"], val.labels),
            "test_acc": metrics["accuracy"],
            "test_acc_tta": accuracy(best["test_tta"], test.labels),
            "test_f1": metrics["macro_f1"],
            "checkpoint": "best/best.pt",
            "config": best["payload"]["config"],
            "metrics": metrics,
        },
        "ensemble": None,
    }
    if len(members) > 1:
        mean = {k: np.mean([m[k] for m in members], axis=0) for k in ("val", "test", "test_tta")}
        final["ensemble"] = {
            "k": len(members),
            "trial_ids": [m["row"]["trial_id"] for m in members],
            "val_acc": accuracy(mean["val"], val.labels),
            "test_acc": accuracy(mean["test"], test.labels),
            "test_acc_tta": accuracy(mean["test_tta"], test.labels),
        }
    return final


def write_confusion(exp: Path, final: dict[str, Any], class_names: Any) -> None:
    """confusion_test.png, and the same figure and the test accuracy in TensorBoard."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from fer_search.evaluation import confusion_figure, plot_confusion

    metrics = final["best"]["metrics"]
    title = f"best trial {final['best']['trial_id']} on test"
    plot_confusion(metrics["confusion_matrix"], class_names, exp / "confusion_test.png", title)
    writer = SummaryWriter(log_dir=str(exp / "final"))
    writer.add_figure(
        "final/confusion_test", confusion_figure(metrics["confusion_matrix"], class_names, title)
    )
    writer.add_scalar("final/test_acc", metrics["accuracy"])
    writer.close()
    plt.close("all")
