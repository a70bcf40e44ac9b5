"""The Python API: what the CLI and `bench` call, and what a notebook calls.

    import fer_search
    data = fer_search.load_data("demo")
    result = fer_search.train({"model": "simple_cnn", "epochs": 2}, data=data, out="runs/one")
    metrics = fer_search.evaluate("runs/one/best.pt", data=data, split="test", tta="flip")
    exported = fer_search.export("runs/one/best.pt", "onnx", "model.onnx", data=data)
    exp = fer_search.search("demo", data="demo", num_samples=2, epochs=1, storage="runs")
    print(exp.leaderboard)
    diff = fer_search.compare("runs/one", exp.path, data=data, split="val")  # vs the search's best

A mistake a user can make raises `fer_search.UserError` with the one-line message the CLI
prints (the CLI exits 2 with it). Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.config import SMOOTH, TrainConfig
from fer_search.errors import UserError, did_you_mean
from fer_search.experiment import Experiment, read_json_if_present

if TYPE_CHECKING:
    from fer_search.data import FERData
    from fer_search.engine import TrainResult
    from fer_search.exporter import ExportResult
    from fer_search.faces import TrackOptions
    from fer_search.video import VideoPrediction

__all__ = [
    "Experiment",
    "compare",
    "evaluate",
    "export",
    "load_data",
    "predict",
    "predict_video",
    "resume",
    "search",
    "train",
    "upgrade",
]

log = logging.getLogger(__name__)

DataArg = Any  # a FERData, or a source for load_data: "demo", a path, or None (./data or demo)


# ---------------------------------------------------------------- data
def load_data(
    source: str | Path | None = "demo",
    *,
    class_set: str = "all",
    ferplus: str | Path | None = None,
    ferplus_mode: str = "majority",
    cache: bool = True,
    demo_size: float = 1.0,
) -> FERData:
    """FER2013 in any form `fer-search data` accepts, or the demo data ("demo"), split into
    train / val (PublicTest) / test (PrivateTest). None: ./data if it holds FER2013, else the
    demo data. Notes (e.g. a carved val split) are printed to stderr."""
    from fer_search import data as data_layer

    if not demo_size > 0:
        raise UserError(f"--demo-size must be > 0, got {demo_size:g}")
    data = data_layer.load_data(
        source,
        class_set=class_set,
        ferplus=ferplus,
        ferplus_mode=ferplus_mode,
        cache=cache,
        demo_size=demo_size,
    )
    for note in data.notes:
        log.info("note: %s", note)
    return data


def as_data(data: DataArg, class_set: str | None = None) -> FERData:
    """A FERData as it is, or a source loaded (with the class set a checkpoint needs)."""
    from fer_search.data import FERData

    if isinstance(data, FERData):
        return data
    return load_data(data, class_set=class_set or "all")


# ---------------------------------------------------------------- one model
def train(
    config: TrainConfig | dict[str, Any],
    data: DataArg = "demo",
    out: str | Path | None = None,
    *,
    on_epoch: Callable[[Any], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train one model (no Ray), selecting its best epoch on val. With `out` (a new or empty
    directory), write config.yaml, last.pt each epoch, best.pt and metrics.json there.
    `on_epoch(stats)` sees each epoch's EpochStats."""
    import yaml

    from fer_search import engine
    from fer_search.models import list_models

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    models = list_models()
    if cfg.model not in models:  # before the (slow) data load and before anything is written
        raise UserError(f"unknown model {cfg.model!r}{did_you_mean(cfg.model, models)}")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_out_dir(out_dir)
    data = as_data(data, cfg.class_set)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def each_epoch(stats: Any, save: Callable[[Path], None]) -> bool:
        if on_epoch is not None:
            on_epoch(stats)
        if out_dir is not None:
            save(out_dir / "last.pt")
        return False

    split_train, split_val = data.splits["train"], data.splits["val"]
    result = engine.train(cfg, split_train, split_val, on_epoch=each_epoch, progress=progress)
    if result.epochs_run == 0 or result.model is None:
        raise UserError(f"training produced no usable epoch: {result.message}")
    if out_dir is not None:
        payload = engine.best_payload(result, cfg, split_train.class_names)
        engine.save_checkpoint(out_dir / "best.pt", payload)
        metrics = {
            "status": result.status,
            "message": result.message,
            "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc,
            "best_val_acc_ci95": result.best_val_acc_ci95,
            "epochs_run": result.epochs_run,
            "data": data.source,
            "history": [dataclasses.asdict(h) for h in result.history],
        }
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return result


def check_out_dir(path: Path) -> None:
    """Never overwrite a user's results: refuse a non-empty directory (or a file)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "exists and is not empty" if path.is_dir() else "is a file"
        raise UserError(f"output directory {str(path)!r} {what}; choose another --out")


def evaluate(
    checkpoint: str | Path,
    data: DataArg = "demo",
    split: str = "test",
    tta: str = "none",
    *,
    device: str = "auto",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and the confusion matrix of a checkpoint on a
    split (test = PrivateTest; select models on val). With `out`, also write
    eval-<split>[-<tta>].json and its confusion-matrix PNG there."""
    from fer_search import engine
    from fer_search.evaluation import classification_metrics, plot_confusion

    payload = engine.load_checkpoint(checkpoint)
    where = engine.resolve_device(device)
    model = engine.model_from_checkpoint(payload, where)
    data = as_data(data, payload["config"].get("class_set", "all"))
    part = split_for(data, split, payload["class_names"], "evaluate")
    probs = engine.predict_probs(model, part.images, device=where, tta=tta)
    metrics = classification_metrics(probs, part.labels, part.class_names)
    metrics.update(split=split, tta=tta, checkpoint=str(checkpoint), data=data.source)
    metrics["title"] = f"{payload['model_args'].get('name', '?')} on {split} (tta={tta})"
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"eval-{split}" + ("" if tta == "none" else f"-{tta}")
        (out_dir / f"{stem}.json").write_text(json.dumps(metrics, indent=2))
        png = out_dir / f"{stem}-confusion.png"
        plot_confusion(metrics["confusion_matrix"], part.class_names, png, title=metrics["title"])
        metrics["written"] = [str(out_dir / f"{stem}.json"), str(png)]
    return metrics


def split_for(data: FERData, split: str, class_names: list[str], command: str) -> Any:
    """The split's images, once it is known to hold the checkpoint's classes."""
    if split not in data.splits:
        raise UserError(f"split {split!r} is not in {data.source} (has {', '.join(data.splits)})")
    part = data.splits[split]
    if list(part.class_names) != list(class_names):
        raise UserError(
            f"checkpoint classes {list(class_names)} differ from the data's "
            f"{list(part.class_names)} ({command} uses the checkpoint's class set)"
        )
    return part


def compare(
    a: str | Path,
    b: str | Path,
    data: DataArg = "demo",
    split: str = "test",
    tta: str = "none",
    *,
    device: str = "auto",
) -> dict[str, Any]:
    """Two models on the same images of a split: each accuracy with its 95 % interval, the
    paired difference A - B with its interval and McNemar's p-value (`within_noise` when the
    interval contains 0), and each class's accuracy (recall) for both. A and B: a checkpoint
    (best.pt or its directory) or an experiment folder (its best/best.pt)."""
    from fer_search import engine
    from fer_search.evaluation import compare_predictions

    paths = [checkpoint_path(a), checkpoint_path(b)]
    payloads = [engine.load_checkpoint(path) for path in paths]
    classes_a, classes_b = (list(payload["class_names"]) for payload in payloads)
    if classes_a != classes_b:
        raise UserError(
            f"{str(a)!r} and {str(b)!r} predict different classes ({classes_a} vs {classes_b}); "
            "compare needs models of the same class set"
        )
    data = as_data(data, payloads[0]["config"].get("class_set", "all"))
    part = split_for(data, split, classes_a, "compare")
    where = engine.resolve_device(device)
    preds = []
    for payload in payloads:
        model = engine.model_from_checkpoint(payload, where)
        preds.append(engine.predict_probs(model, part.images, device=where, tta=tta).argmax(1))
        del model
    result = compare_predictions(part.labels, preds[0], preds[1], part.class_names)
    for key, path, payload in zip(("a", "b"), paths, payloads, strict=True):
        result[key] = {
            "path": str(path),
            **result[key],
            "model": payload["model_args"].get("name", "?"),
        }
    result.update(split=split, tta=tta, data=data.source)
    return result


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint as given (best.pt or its directory), or an experiment folder's
    best/best.pt (written by its final evaluation)."""
    path = Path(path)
    if (path / "experiment.json").is_file():
        best = path / "best" / "best.pt"
        if not best.is_file():
            raise UserError(
                f"experiment {str(path)!r} has no best/best.pt (its final evaluation has not "
                f"run; an interrupted search finishes with fer-search --resume {path})"
            )
        return best
    return path


def checkpoint_class_set(path: str | Path) -> str:
    """The class set a checkpoint (or an experiment's best model) was trained on."""
    from fer_search import engine

    return str(engine.load_checkpoint(checkpoint_path(path))["config"].get("class_set", "all"))


def predict(
    checkpoint: str | Path,
    images: list[str],
    *,
    detect_faces: bool = False,
    annotate: str | Path | None = None,
    tta: str = "none",
    device: str = "auto",
    detector: str | None = None,
    min_pixels: int | None = None,
) -> list[dict[str, Any]]:
    """The emotion of each image (or of each face found in it, with `detect_faces`, by
    `detector`: fer_search.faces.DETECTORS, default YuNet; `min_pixels` the smallest side)."""
    from fer_search import prediction

    faces = given(detector=detector, min_pixels=min_pixels)
    if faces and not detect_faces:
        flag = "--face-detector" if "detector" in faces else "--min-face-pixels"
        raise UserError(f"{flag} needs --detect-faces")
    return prediction.predict(
        checkpoint, images, detect_faces=detect_faces, annotate_dir=annotate, tta=tta,
        device=device, **faces,
    )  # fmt: skip


def predict_video(
    checkpoint: str | Path,
    source: str | Path | int,
    *,
    smooth: float = SMOOTH,
    every: int = 1,
    max_frames: int | None = None,
    annotate: str | Path | None = None,
    tta: str = "none",
    device: str = "auto",
    detector: str | None = None,
    detect_every: int | None = None,
    rotate: int = 0,
    tracking: TrackOptions | None = None,
) -> VideoPrediction:
    """The faces in each frame of a video file (or camera `source`, an int) and their
    emotions, each face's probabilities smoothed over frames (`smooth`: EMA weight of the past,
    0 = off); `.frames` is the per-frame list, `.fps` the processing speed. `detector` runs on
    every `detect_every`-th frame; `tracking` (faces.TrackOptions) says when a face counts."""
    from fer_search import video

    return video.predict_video(
        checkpoint, source, smooth=smooth, every=every, max_frames=max_frames,
        annotate_dir=annotate, tta=tta, device=device, rotate=rotate,
        **given(detector=detector, detect_every=detect_every, tracking=tracking),
    )  # fmt: skip


def given(**arguments: Any) -> dict[str, Any]:
    """The arguments a caller gave (not None): the callee's defaults stay its own."""
    return {name: value for name, value in arguments.items() if value is not None}


def export(
    checkpoint: str | Path,
    format: str,
    out: str | Path,
    data: DataArg = None,
    split: str = "val",
    *,
    runs: int = 20,
    threads: int = 0,
) -> ExportResult:
    """Write a checkpoint's model as ONNX or TorchScript (`format`) to the new file `out`: float32
    (N, 1, 48, 48) pixels 0-255 in, class probabilities out, metadata inside. It is checked
    against the PyTorch model on `split` of `data` (None: the data of the experiment the
    checkpoint belongs to when they are still there, else ./data or the demo data) and timed
    at batch 1 and 64 (median of `runs` runs; 0 = not timed) with `threads` CPU threads (0:
    torch's default). Raises ExportMismatch (and writes nothing) when the accuracies differ by
    more than 0.1 pp."""
    from fer_search import engine
    from fer_search import exporter as export_layer

    target = export_layer.check_target(format, out)  # before anything slow
    export_layer.require_runtime(format)
    if runs < 0 or threads < 0:
        raise UserError(f"--runs and --threads must be >= 0, got {runs=} {threads=}")
    path = engine.checkpoint_file(checkpoint_path(checkpoint))
    payload = engine.load_checkpoint(path)
    class_set = payload["config"].get("class_set", "all")
    if data is None:
        data = experiment_data(path, class_set)
    data = as_data(data, class_set)
    part = split_for(data, split, payload["class_names"], "export")
    return export_layer.export_checkpoint(
        payload, path, format, target, part, data.source, runs=runs, threads=threads
    )


def experiment_data(checkpoint: Path, class_set: str) -> FERData | None:
    """The data of the search whose folder holds `checkpoint` (its best/best.pt or a trial's),
    when they can still be loaded from where experiment.json says; else None."""
    from fer_search.data import load_recorded

    for folder in list(checkpoint.parents)[:3]:
        record = read_json_if_present(folder / "experiment.json")
        if record is None:
            continue
        args = dict(record.get("data_args") or {})
        source = args.get("path", args.get("data"))
        if source not in (None, "demo") and not Path(str(source)).exists():
            where = "./data or the demo data"
            log.info("note: %s (the data of %s) is not here; using %s", source, folder, where)
            return None
        data = load_recorded({**args, "class_set": class_set})
        for note in data.notes:
            log.info("note: %s", note)
        return data
    return None


# ---------------------------------------------------------------- the search
def search(space: Any, data: DataArg = "demo", **overrides: Any) -> Experiment:
    """Search `space` (a shipped name such as "demo", a YAML path, a dict of the YAML's
    content, or a SearchSpace) on `data`. `overrides` are the search flags' names
    (num_samples=, epochs=, storage=, name=, gpus=, gpus_per_trial=, time_budget=, ...,
    warm_start=[earlier experiment folders] to seed TPE with their finished trials),
    `sampler=` (an Optuna sampler in place of the seeded TPE) and `trainer=` (what the trials
    run: `fer_search.SimulatedTrainer(epoch_s=1)` simulates them, for scale tests)."""
    from fer_search.tuning import SearchOptions, start_search

    options = SearchOptions.from_overrides(overrides)
    outcome = start_search(as_space(space), as_data(data), options)
    return Experiment(outcome.path, outcome.interrupted, outcome.note, outcome.wall_time_s)


def resume(path: str | Path, data: DataArg = None, **overrides: Any) -> Experiment:
    """Continue an interrupted search (or finalise one whose driver died at the end). `data`
    defaults to what the search was started on; `overrides`: address=, cpus=, verbose=."""
    from fer_search.tuning import SearchOptions, resume_search

    allowed = {"address", "cpus", "gpus", "verbose", "command", "trainer"}
    for key in overrides:
        if key not in allowed:
            raise UserError(f"resume takes no option {key!r} (only {', '.join(sorted(allowed))})")
    options = SearchOptions(**overrides)
    outcome = resume_search(path, None if data is None else as_data(data), options)
    return Experiment(outcome.path, outcome.interrupted, outcome.note, outcome.wall_time_s)


def upgrade(path: str | Path) -> dict[str, int]:
    """Bring an experiment an earlier fer-search wrote up to date for monitoring: optuna.db
    with no trial left RUNNING and its metric named, TensorBoard runs rebuilt from the
    trials' files. Returns what it did: trials told, recorded again, never started; runs."""
    from fer_search.tuning.upgrade import upgrade_experiment

    return upgrade_experiment(path)


def as_space(space: Any) -> Any:
    from fer_search.space import SearchSpace, load_space, load_space_dict

    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return load_space_dict(space)
    if not space:
        raise UserError("no search space: pass --space FILE.yaml (or a shipped name such as demo)")
    return load_space(str(space))
