"""Command-line front end: parse, call one function, map UserError to one line and exit 2.

Heavy libraries (torch, ray, optuna) are imported inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from fer_search import __version__
from fer_search.config import AMP, BALANCE, CLASS_SETS, OPTIMIZERS, SCHEDULES, TrainConfig
from fer_search.errors import UserError, did_you_mean

COMMANDS = ("search", "train", "evaluate", "predict", "data", "report", "bench")

DESCRIPTION = """\
Hyperparameter search for facial-expression recognition (FER2013): Ray Tune schedules
Optuna-driven trials, ASHA stops weak ones early, the best model gets a final evaluation.

  fer-search --space demo.yaml                 search (the bare form is `search`)
  fer-search --space densenet.yaml --gpus 4    search on 4 GPUs
  fer-search --resume results/<experiment>     finish an interrupted search
"""

# Help for TrainConfig fields that become `train` flags (and --config keys).
TRAIN_HELP = {
    "model": "architecture (simple_cnn, vgg16, resnet101, mobilenet_v2, densenet169)",
    "epochs": "training epochs",
    "batch_size": "batch size",
    "optimizer": f"optimiser: {', '.join(OPTIMIZERS)}",
    "lr": "peak learning rate",
    "momentum": "SGD momentum (AdamW beta1)",
    "weight_decay": "weight decay (not applied to biases and norms)",
    "schedule": f"LR schedule: {', '.join(SCHEDULES)}",
    "warmup_epochs": "linear warm-up epochs",
    "grad_clip": "clip the gradient norm to this (0 = off)",
    "label_smoothing": "label smoothing",
    "ema": "per-step decay of an EMA of the weights, validated and kept instead (0 = off)",
    "balance": f"class balancing: {', '.join(BALANCE)} (mirror = the study's mirrored copies)",
    "dropout": "dropout before the classifier",
    "batch_norm": "batch-norm in simple_cnn",
    "width": "simple_cnn channels of the first block",
    "depth": "simple_cnn conv blocks (each halves the side)",
    "convs": "simple_cnn 3x3 convs per block",
    "blocks": "simple_cnn convs per block, e.g. 1,1,2,2 (overrides --depth and --convs)",
    "pool_before_norm": "simple_cnn: max-pool straight after each block's last conv, before "
    "BatchNorm and ReLU (faster on CPU)",
    "input_size": "resize 48x48 input to this on the device (torchvision models)",
    "pretrained": "start from ImageNet weights (local file or torch hub cache only)",
    "weights_path": "ImageNet weights file for --pretrained",
    "hflip": "horizontal-flip probability",
    "crop_pad": "random shift up to this many pixels",
    "rotation": "random rotation up to this many degrees",
    "scale": "random zoom up to this fraction",
    "brightness": "random brightness shift",
    "contrast": "random contrast change",
    "erasing": "random-erasing probability",
    "mixup": "mixup alpha (0 = off)",
    "cutmix": "cutmix alpha (0 = off)",
    "class_set": f"class set: {', '.join(CLASS_SETS)}",
    "seed": "random seed",
    "device": "auto, cpu, cuda or cuda:N",
    "amp": f"mixed precision: {', '.join(AMP)} (auto: bf16 on CUDA and on CPUs with native bf16)",
    "channels_last": "channels_last memory format (CUDA; CPU under bf16)",
    "compile": "torch.compile the model (CUDA)",
    "threads": "torch CPU threads (0 = default)",
    "eval_batch_size": "evaluation batch size",
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="PATH",
        help="FER2013 csv(.gz/.zip), icml_face_data.csv, train.csv, image folders or a directory "
        "holding one; 'demo' = built-in synthetic data (default: ./data if present, else demo)",
    )
    group.add_argument(
        "--class-set",
        choices=CLASS_SETS,
        default=None,
        help="all (default), drop-disgust, merge-disgust",
    )
    group.add_argument("--ferplus", metavar="CSV", help="FER+ labels (fer2013new.csv)")
    group.add_argument("--ferplus-mode", choices=("majority", "soft"), default="majority")
    group.add_argument(
        "--demo-size",
        type=float,
        default=1,
        metavar="N",
        help="demo data size multiplier (default 1: 2,100 train images)",
    )
    group.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def load_data_from_args(args: argparse.Namespace, class_set: str | None = None):
    from fer_search.data import load_data

    if not args.demo_size > 0:
        raise UserError(f"--demo-size must be > 0, got {args.demo_size:g}")
    return load_data(
        args.data,
        class_set=class_set or args.class_set or "all",
        ferplus=args.ferplus,
        ferplus_mode=args.ferplus_mode,
        cache=not args.no_cache,
        demo_size=args.demo_size,
    )


def print_notes(data) -> None:
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)


# ---------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace) -> int:
    from fer_search.data import format_summary, summarize

    data = load_data_from_args(args)
    if args.json:
        print(json.dumps(summarize(data), indent=2))
    else:
        print(format_summary(data))
    return 0


# ---------------------------------------------------------------- train
def add_train_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (override --config)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "class_set":
            continue  # a data flag
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=TRAIN_HELP.get(f.name),
            )
        else:
            group.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"{TRAIN_HELP.get(f.name, '')} (default {f.default!r})",
            )


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        values.update(read_yaml_mapping(args.config))
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
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


def check_out_dir(path: Path) -> None:
    """Never overwrite a user's results: refuse a non-empty directory (or a file)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "exists and is not empty" if path.is_dir() else "is a file"
        raise UserError(f"output directory {str(path)!r} {what}; choose another --out")


def new_out_dir(out: str | None, default: Path) -> Path:
    path = Path(out) if out else default
    check_out_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cmd_train(args: argparse.Namespace) -> int:
    import time

    import yaml

    from fer_search import engine
    from fer_search.models import list_models

    cfg = train_config_from_args(args)
    if args.class_set:
        cfg.class_set = args.class_set
    # Fail on a typo before the (slow) data load and before anything is written: a half-made
    # --out directory would refuse the corrected command.
    models = list_models()
    if cfg.model not in models:
        raise UserError(f"unknown model {cfg.model!r}{did_you_mean(cfg.model, models)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    default_out = Path("results") / "train" / f"{cfg.model}-{stamp}"
    check_out_dir(Path(args.out) if args.out else default_out)
    data = load_data_from_args(args, class_set=cfg.class_set)
    print_notes(data)
    out = new_out_dir(args.out, default_out)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    train_split, val_split = data.splits["train"], data.splits["val"]
    print(
        f"training {cfg.model} on {len(train_split)} images ({data.source}), "
        f"selecting on val ({len(val_split)}); writing {out}"
    )

    def on_epoch(stats, save) -> bool:
        print(
            f"epoch {stats.epoch:>3}/{cfg.epochs}  loss {stats.train_loss:.4f}  "
            f"train {stats.train_acc * 100:5.2f} %  val {stats.val_acc * 100:5.2f} %  "
            f"f1 {stats.val_f1:.3f}  lr {stats.lr:.2e}  {stats.images_per_s:,.0f} img/s  "
            f"{stats.epoch_time:.1f} s",
            flush=True,
        )
        save(out / "last.pt")
        return False

    result = engine.train(
        cfg, train_split, val_split, on_epoch=on_epoch, progress=sys.stderr.isatty()
    )
    if result.status == "nan":
        print(f"warning: {result.message}", file=sys.stderr)
    if result.epochs_run == 0 or result.model is None:
        raise UserError(f"training produced no usable epoch: {result.message}")
    engine.save_checkpoint(
        out / "best.pt", engine.best_payload(result, cfg, train_split.class_names)
    )
    metrics = {
        "status": result.status,
        "message": result.message,
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "epochs_run": result.epochs_run,
        "data": data.source,
        "history": [dataclasses.asdict(h) for h in result.history],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"best val accuracy {result.best_val_acc * 100:.2f} % at epoch {result.best_epoch}; "
        f"checkpoint {out / 'best.pt'}"
    )
    return 0


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_search import engine
    from fer_search.evaluation import classification_metrics, format_metrics, plot_confusion

    payload = engine.load_checkpoint(args.checkpoint)
    device = engine.resolve_device(args.device)
    model = engine.model_from_checkpoint(payload, device)
    class_set = payload["config"].get("class_set", "all")
    data = load_data_from_args(args, class_set=class_set)
    print_notes(data)
    if args.split not in data.splits:
        raise UserError(
            f"split {args.split!r} is not in {data.source} (has {', '.join(data.splits)})"
        )
    split = data.splits[args.split]
    if list(split.class_names) != list(payload["class_names"]):
        raise UserError(
            f"checkpoint classes {payload['class_names']} differ from the data's "
            f"{list(split.class_names)} (evaluate uses the checkpoint's class set)"
        )
    probs = engine.predict_probs(model, split.images, device=device, tta=args.tta)
    metrics = classification_metrics(probs, split.labels, split.class_names)
    metrics.update(
        split=args.split, tta=args.tta, checkpoint=str(args.checkpoint), data=data.source
    )
    title = f"{payload['model_args'].get('name', '?')} on {args.split} (tta={args.tta})"
    print(format_metrics(metrics, title))
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{args.split}" + ("" if args.tta == "none" else f"-{args.tta}")
    (out / f"{stem}.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(
        metrics["confusion_matrix"], split.class_names, out / f"{stem}-confusion.png", title=title
    )
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '-confusion.png')}")
    return 0


# ---------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from fer_search import predict

    return predict.run(args)


# ---------------------------------------------------------------- search / report / bench
def cmd_search(args: argparse.Namespace) -> int:
    from fer_search import search

    return search.run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from fer_search import report

    path = report.build_report(Path(args.experiment))
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from fer_search import bench

    return bench.run(args)


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        metavar="YAML",
        help="search space: a path, or a shipped name (demo, simple_cnn, vgg16, "
        "resnet101, mobilenet_v2, densenet, all, reference)",
    )
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted experiment")
    parser.add_argument("--name", help="experiment name (default <space>-<time>)")
    parser.add_argument(
        "--storage",
        metavar="PATH|URI",
        help="results root and Tune storage_path (default ./results); on a multi-node cluster a "
        "path every node mounts (NFS) or s3://, gs://... (Tune's trials go there, the driver's "
        "files to ./results/<name>/ and are uploaded beside them)",
    )
    parser.add_argument(
        "--address",
        help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, else start a local Ray); set RAY_AUTH_MODE (and the token) "
        "as the cluster has them, see cluster/README.md",
    )
    res = parser.add_argument_group("resources")
    res.add_argument(
        "--gpus",
        type=float,
        default=None,
        help="total GPUs to use (default: all the cluster has; 0 = CPU)",
    )
    res.add_argument(
        "--gpus-per-trial", type=float, default=None, help="fractions allowed, e.g. 0.25"
    )
    res.add_argument("--cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    res.add_argument("--cpus-per-trial", type=float, default=None)
    res.add_argument("--max-concurrent", type=int, default=None, help="trials at once")
    exp = parser.add_argument_group("experiment (override the space's `experiment:`)")
    exp.add_argument("--num-samples", type=int, default=None, help="number of trials")
    exp.add_argument("--epochs", type=int, default=None, help="epochs per trial = ASHA max_t")
    exp.add_argument("--grace-period", type=int, default=None, help="ASHA grace period (epochs)")
    exp.add_argument("--reduction-factor", type=int, default=None, help="ASHA reduction factor")
    exp.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-time budget for training: the search's trials, plus the refit if any",
    )
    exp.add_argument(
        "--refit-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="part of --time-budget kept to retrain the best configuration for as many epochs "
        "as fit (0 = no refit)",
    )
    exp.add_argument(
        "--refit-top-k",
        type=int,
        default=None,
        metavar="K",
        help="refit the K best configurations at once, sharing the search's resources",
    )
    exp.add_argument("--seed", type=int, default=None)
    exp.add_argument(
        "--top-k", type=int, default=None, help="ensemble size for the final evaluation"
    )
    exp.add_argument("--no-asha", action="store_true", help="run every trial to max_t")
    exp.add_argument("--no-final-eval", action="store_true", help="skip the test-split evaluation")
    exp.add_argument("--verbose", type=int, default=1, help="Ray Tune verbosity 0-3")
    add_data_args(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fer-search",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fer-search {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("search", help="run a search (the default: `fer-search --space X.yaml`)")
    add_search_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("train", help="train one model (one trial, no Ray)")
    p.add_argument("--config", metavar="YAML", help="run config: TrainConfig fields as a mapping")
    p.add_argument(
        "--out", metavar="DIR", help="output directory (default results/train/<model>-<time>)"
    )
    add_train_flags(p)
    add_data_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or its directory")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="split to evaluate (default test = PrivateTest; select models on val)",
    )
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        default="none",
        choices=("none", "flip", "crops"),
        help="test-time augmentation (--tta = flip)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", metavar="DIR", help="where to write metrics JSON and PNG")
    add_data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (optionally find faces first)")
    p.add_argument("--checkpoint", required=True, metavar="PATH")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--detect-faces",
        action="store_true",
        help="find faces first (OpenCV Haar cascade; pip install 'fer-search[faces]')",
    )
    p.add_argument(
        "--annotate", metavar="DIR", help="with --detect-faces: write annotated copies here"
    )
    p.add_argument(
        "--tta", nargs="?", const="flip", default="none", choices=("none", "flip", "crops")
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("data", help="show what a data source holds")
    p.add_argument("--json", action="store_true", help="print splits -> class -> count as JSON")
    add_data_args(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("report", help="rebuild report.md/report.json from a results directory")
    p.add_argument("experiment", metavar="DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "bench", help="measure pipeline speed, search overhead, ASHA savings, memory"
    )
    p.add_argument("--quick", action="store_true", help="small run on demo data (minutes)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", metavar="DIR", default="results/benchmarks")
    p.add_argument(
        "--only",
        action="append",
        choices=("data", "pipeline", "overhead", "asha", "memory"),
        help="measure only this figure group (repeatable); writes bench[-quick]-GROUP.*",
    )
    add_data_args(p)
    p.set_defaults(func=cmd_bench)
    return parser


def normalise_argv(argv: list[str]) -> list[str]:
    """The bare form `fer-search --space X.yaml` means `fer-search search --space X.yaml`."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        return ["search", *argv]
    return argv


def close_flag(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """The "; did you mean '--epochs'?" hint for the first unknown flag, among its command's."""
    flag = next((word.split("=")[0] for word in unknown if word.startswith("--")), "")
    for action in parser._actions:
        if flag and isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return did_you_mean(flag, action.choices[command]._option_string_actions)
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    args_list = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if not args_list:
        parser.print_help()
        return 0
    args, unknown = parser.parse_known_args(args_list)
    if unknown:
        hint = close_flag(parser, args.command, unknown)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"fer-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
