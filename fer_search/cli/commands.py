"""Each command: its flags -> one call of the Python API (fer_search.api) -> what it prints.

Heavy libraries (torch, ray, optuna) are imported inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fer_search.config import TrainConfig
from fer_search.errors import UserError

__all__ = ["COMMAND_FUNCTIONS"]

DATA_FLAGS = ("data", "class_set", "ferplus", "ferplus_mode", "demo_size", "no_cache")


def data_from_args(args: argparse.Namespace, class_set: str | None = None):
    from fer_search import api

    return api.load_data(
        args.data,
        class_set=class_set or args.class_set or "all",
        ferplus=args.ferplus,
        ferplus_mode=args.ferplus_mode,
        cache=not args.no_cache,
        demo_size=args.demo_size,
    )


# ---------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace) -> int:
    from fer_search.data import format_summary, summarize

    data = data_from_args(args)
    print(json.dumps(summarize(data), indent=2) if args.json else format_summary(data))
    return 0


# ---------------------------------------------------------------- train / evaluate / predict
def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        values.update(read_yaml_mapping(args.config))
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    if args.class_set:
        values["class_set"] = args.class_set
    return TrainConfig.from_dict(values, source=args.config or "command line")


def read_yaml_mapping(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UserError(f"config {path!r} does not exist")
    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config {path!r}{where}: not valid YAML") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"config {path!r} must be a mapping of setting: value")
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from fer_search import api

    cfg = train_config_from_args(args)  # an unknown model fails here, before the data load
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / "train" / f"{cfg.model}-{stamp}"
    api.check_out_dir(out)  # before the (slow) data load
    data = data_from_args(args, class_set=cfg.class_set)
    train_split, val_split = data.splits["train"], data.splits["val"]
    print(
        f"training {cfg.model} on {len(train_split)} images ({data.source}), "
        f"selecting on val ({len(val_split)}); writing {out}"
    )

    def on_epoch(stats: Any) -> None:
        print(
            f"epoch {stats.epoch:>3}/{cfg.epochs}  loss {stats.train_loss:.4f}  "
            f"train {stats.train_acc * 100:5.2f} %  val {stats.val_acc * 100:5.2f} %  "
            f"f1 {stats.val_f1:.3f}  lr {stats.lr:.2e}  {stats.images_per_s:,.0f} img/s  "
            f"{stats.epoch_time:.1f} s",
            flush=True,
        )

    result = api.train(cfg, data, out, on_epoch=on_epoch, progress=sys.stderr.isatty())
    if result.status == "nan":
        print(f"warning: {result.message}", file=sys.stderr)
    from fer_search.stats import percent

    interval = result.best_val_acc_ci95
    best = percent(result.best_val_acc, interval) + (" (95 % interval)" if interval else "")
    print(f"best val accuracy {best} at epoch {result.best_epoch}; checkpoint {out / 'best.pt'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_search import api, engine
    from fer_search.evaluation import format_metrics

    payload = engine.load_checkpoint(args.checkpoint)  # its class set picks the data's
    data = data_from_args(args, class_set=payload["config"].get("class_set", "all"))
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent)
    metrics = api.evaluate(args.checkpoint, data, args.split, args.tta, device=args.device, out=out)
    print(format_metrics(metrics, metrics["title"]))
    print(f"wrote {metrics['written'][0]} and {metrics['written'][1]}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fer_search import api
    from fer_search.evaluation import format_comparison

    class_set = api.checkpoint_class_set(args.a)  # a bad A fails before the data load
    data = data_from_args(args, class_set=class_set)
    result = api.compare(args.a, args.b, data, args.split, args.tta, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        title = f"A vs B on {args.split} (tta={args.tta}) of {result['data']}"
        print(format_comparison(result, title))
    return 0


# predict's flags that only a video takes; the tracking ones are faces.TrackOptions' fields
VIDEO_FLAGS = ("smooth", "every", "max_frames", "detect_every", "rotate")
TRACK_FLAGS = {"confirm": "confirm", "max_miss": "max_miss", "min_face": "min_face",
               "min_face_pixels": "min_pixels"}  # fmt: skip


def cmd_predict(args: argparse.Namespace) -> int:
    from fer_search import api, prediction

    if args.video is not None or args.camera is not None:
        return predict_video(args)
    for name in (*VIDEO_FLAGS, *TRACK_FLAGS):
        if name != "min_face_pixels" and getattr(args, name) is not None:
            raise UserError(f"--{name.replace('_', '-')} applies to --video or --camera only")
    if not args.images:
        raise UserError("predict needs IMAGE paths, --video FILE or --camera N")
    results = api.predict(
        args.checkpoint, args.images, detect_faces=args.detect_faces, annotate=args.annotate,
        tta=args.tta, device=args.device, detector=args.face_detector,
        min_pixels=args.min_face_pixels,
    )  # fmt: skip
    print(json.dumps(results, indent=2) if args.json else prediction.format_predictions(results))
    return 0


def predict_video(args: argparse.Namespace) -> int:
    """`predict --video/--camera`: a line per face and frame (or a JSON list, one frame a
    line), then the summary with the frames per second (on stderr with --json)."""
    from fer_search import api, video
    from fer_search.faces import TrackOptions

    flag = f"--video {args.video}" if args.video is not None else f"--camera {args.camera}"
    if args.images:
        raise UserError(f"give IMAGE paths or {flag}, not both (got {args.images[0]!r})")
    if not args.detect_faces:
        raise UserError(
            f"{flag} needs --detect-faces: the model reads 48x48 face crops, and a whole frame "
            "shrunk to 48x48 is not one"
        )
    options = {name: getattr(args, name) for name in VIDEO_FLAGS if getattr(args, name) is not None}
    tracking = TrackOptions(
        **{field: getattr(args, flag_) for flag_, field in TRACK_FLAGS.items()
           if getattr(args, flag_) is not None}
    )  # fmt: skip
    result = api.predict_video(
        args.checkpoint, args.video if args.video is not None else args.camera,
        annotate=args.annotate, tta=args.tta, device=args.device,
        detector=args.face_detector, tracking=tracking, **options,
    )  # fmt: skip
    if args.json:
        print("[\n" + ",\n".join(json.dumps(frame) for frame in result.frames) + "\n]")
    elif result.frames and (text := video.format_video(result)):
        print(text)
    notes = sys.stderr if args.json else sys.stdout
    print(video.summary_line(result), file=notes)
    if result.annotated:
        print(f"annotated video: {result.annotated}", file=notes)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fer_search import api
    from fer_search.errors import ExportMismatch
    from fer_search.exporter import check_target, format_result, require_runtime

    check_target(args.format, args.out)  # before the (slow) data load
    require_runtime(args.format)
    data = None  # the checkpoint's experiment's data, else ./data or the demo data
    if args.data is not None:
        data = data_from_args(args, class_set=api.checkpoint_class_set(args.checkpoint))
    try:
        result = api.export(
            args.checkpoint,
            args.format,
            args.out,
            data,
            args.split,
            runs=args.runs,
            threads=args.threads,
        )
    except ExportMismatch as exc:
        print(f"fer-search: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


# ---------------------------------------------------------------- search / report / bench
def search_options(args: argparse.Namespace) -> dict[str, Any]:
    from fer_search.tuning import SearchOptions

    names = {f.name for f in dataclasses.fields(SearchOptions)} - {"sampler", "command"}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values["command"] = getattr(args, "command_line", None)
    return values


def cmd_search(args: argparse.Namespace) -> int:
    from fer_search import api
    from fer_search.tuning import SearchOptions
    from fer_search.tuning.faults import FAULT_ENV, FaultyTrainer

    if args.resume and args.warm_start:
        raise UserError(
            "--warm-start seeds a new search; --resume continues one with the trials it has"
        )
    if args.resume:
        exp = api.resume(args.resume, address=args.address, cpus=args.cpus, verbose=args.verbose)
    else:
        space = api.as_space(args.space)  # a bad space or --warm-start fails before the data load
        options = search_options(args)
        if os.environ.get(FAULT_ENV):  # tests' fault injection (tuning.faults), as an argument
            try:
                options["trainer"] = FaultyTrainer(spec=os.environ[FAULT_ENV])
            except ValueError as exc:
                raise UserError(f"{FAULT_ENV}: {exc}") from None
        SearchOptions.from_overrides(options)  # checked again by the call; here before the load
        exp = api.search(space, data_from_args(args), **options)
    return print_outcome(exp)


def percent(part: dict[str, Any], key: str = "test_acc") -> str:
    """`76.86 % [72.57, 81.14]`: a figure of final.json with its 95 % interval, if it has one."""
    from fer_search import stats

    return stats.percent(part[key], part.get(f"{key}_ci95"))


def test_line(final: dict[str, Any]) -> str:
    """The final evaluation in one line, every accuracy with its 95 % interval."""
    best, parts = final["best"], []
    tta = final.get("tta") or {}
    if tta.get("chosen") not in (None, "none") and "test_acc" in tta:
        parts.append(f"with {tta['chosen']} TTA (chosen on val) {percent(tta)}")
    elif best.get("test_acc_flip") is not None:
        parts.append(f"val chose no TTA; flip: {percent(best, 'test_acc_flip')}")
    line = f"test (PrivateTest, used once): best {percent(best)}"
    line += f" ({'; '.join(parts)})" if parts else ""
    if final.get("ensemble"):
        line += f"; top-{final['ensemble']['k']} ensemble {percent(final['ensemble'])}"
    selected = final.get("selected_ensemble")
    if selected and selected.get("test_acc") is not None:
        line += f"; selected ensemble {percent(selected)}"
    return line + " (95 % intervals)"


def print_outcome(exp: Any) -> int:
    """The summary lines; 130 when interrupted, 1 when every trial failed."""
    if exp.interrupted:
        print(
            f"interrupted {exp.note}; the state is saved. Continue with: "
            f"fer-search --resume {exp.path}",
            file=sys.stderr,
        )
        return 130
    print(exp.summary())
    final = exp.final
    if final:
        print(test_line(final))
    print(
        f"report: {exp.path / 'report.md'}   "
        f"TensorBoard: tensorboard --logdir {exp.path / 'tensorboard'} --host 127.0.0.1"
    )
    board = exp.leaderboard
    failed = int(board["status"].isin(["failed", "nan"]).sum()) if "status" in board else 0
    if len(board) and failed == len(board):
        print(
            "fer-search: every trial failed; see the error column in leaderboard.csv",
            file=sys.stderr,
        )
        return 1
    if failed:
        print(f"warning: {failed} trial(s) failed; see leaderboard.csv", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fer_search.errors import RecheckFailed
    from fer_search.report import build_report

    if args.recheck:
        from fer_search.recheck import recheck

        try:
            print(recheck(args.experiment))
        except RecheckFailed as exc:
            print(f"fer-search: {exc}", file=sys.stderr)
            return 1
    if args.upgrade:
        from fer_search import api

        done = api.upgrade(args.experiment)
        print(
            f"optuna.db: {done['told']} RUNNING trial(s) closed, {done['resumed']} resumed "
            f"trial(s) recorded, {done['not_started']} never started, {done['end_times']} "
            f"end time(s) set from the trials' results; "
            f"TensorBoard: {done['tensorboard_runs']} run(s) rebuilt"
        )
    path = build_report(Path(args.experiment))
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from fer_search import bench

    data_args = {name: getattr(args, name) for name in DATA_FLAGS}
    return bench.run(
        quick=args.quick,
        device=args.device,
        out=Path(args.out),
        only=args.only,
        as_json=args.json,
        data_args=data_args,
        command=getattr(args, "command_line", None),
        show=print,
    )


COMMAND_FUNCTIONS = {
    "search": cmd_search,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "predict": cmd_predict,
    "export": cmd_export,
    "data": cmd_data,
    "report": cmd_report,
    "bench": cmd_bench,
}
