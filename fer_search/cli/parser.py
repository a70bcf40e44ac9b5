"""The command line's flags: one argparse parser, one sub-parser per command."""

from __future__ import annotations

import argparse
import dataclasses
from typing import NoReturn

from fer_search import __version__
from fer_search.cli._argparse_compat import SubParsers
from fer_search.config import (
    AMP,
    BALANCE,
    CLASS_SETS,
    OPTIMIZERS,
    SCHEDULERS,
    SCHEDULES,
    SMOOTH,
    TrainConfig,
)

TTA_CHOICES = ("none", "flip", "crops", "tencrop")  # engine.TTA, without importing torch
COMMANDS = (
    "search",
    "train",
    "evaluate",
    "compare",
    "predict",
    "export",
    "data",
    "report",
    "bench",
)

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
    "anneal_at": "epochs by which the cosine/one-cycle schedule anneals and then restarts, "
    "e.g. 1,3 (a search's ASHA rungs under --rung-anneal)",
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
    "amp": f"mixed precision: {', '.join(AMP)} (auto: bf16 where native, i.e. CUDA >= 8.0 and "
    "AVX512-BF16 CPUs; fp16 with a GradScaler on older GPUs; else fp32)",
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


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        metavar="YAML",
        help="search space: a path, or a shipped name (demo, simple_cnn, vgg16, "
        "resnet101, mobilenet_v2, densenet, all, reference, gpu_check)",
    )
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted experiment")
    parser.add_argument(
        "--warm-start",
        nargs="+",
        metavar="DIR",
        help="start TPE from the finished trials of earlier experiments (those that fit the "
        "space; they do not count toward --num-samples)",
    )
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
    add_experiment_flags(parser)
    add_data_args(parser)


def add_experiment_flags(parser: argparse.ArgumentParser) -> None:
    exp = parser.add_argument_group("experiment (override the space's `experiment:`)")
    exp.add_argument("--num-samples", type=int, default=None, help="number of trials")
    exp.add_argument(
        "--scheduler",
        default=None,
        metavar="{" + ",".join(SCHEDULERS) + "}",  # checked with the space (did you mean)
        help="Ray Tune's trial scheduler: asha (the space's default), hyperband (synchronous; "
        "pauses trials at its milestones and resumes them from a checkpoint), median (the "
        "median stopping rule), pbt (population based training: copies better trials' "
        "checkpoints and perturbs lr, weight decay and augmentation) or fifo (every trial to "
        "max_t)",
    )
    exp.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial = the scheduler's max_t"
    )
    exp.add_argument(
        "--grace-period", type=int, default=None, help="ASHA's and the median rule's (epochs)"
    )
    exp.add_argument(
        "--reduction-factor", type=int, default=None, help="ASHA's and HyperBand's (eta)"
    )
    exp.add_argument(
        "--rung-anneal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="anneal each trial's cosine or one-cycle learning rate by every ASHA rung and "
        "start it again after (trials are compared at rungs annealed, as at the end)",
    )
    exp.add_argument(
        "--min-samples-required",
        type=int,
        default=None,
        metavar="N",
        help="the median rule compares a trial with at least N others",
    )
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
    exp.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="write each trial's resumable checkpoint every N epochs (and at its last; the "
        "best epoch's weights are kept whatever N is)",
    )
    exp.add_argument(
        "--max-failures",
        type=int,
        default=None,
        metavar="N",
        help="retry a trial whose worker or node died up to N times, from its last checkpoint "
        "(a trial's own failure, e.g. NaN or out of memory, is never retried)",
    )
    exp.add_argument("--seed", type=int, default=None)
    exp.add_argument(
        "--pick",
        default=None,
        metavar="COND[,COND]",
        help="a multi-objective search (the space's `objectives:`): which Pareto-optimal trial "
        "becomes best/, e.g. 'latency_ms<=2' or 'params<1e6,latency_ms<=3' (the highest val_acc "
        "among those that satisfy it)",
    )
    exp.add_argument(
        "--top-k", type=int, default=None, help="ensemble size for the final evaluation"
    )
    exp.add_argument(
        "--no-asha", action="store_true", help="run every trial to max_t (= --scheduler fifo)"
    )
    exp.add_argument("--no-final-eval", action="store_true", help="skip the test-split evaluation")
    exp.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=range(4),
        metavar="{0,1,2,3}",
        help="console during the search: 0 nothing but the final summary; 1 (default) one row "
        "per trial, a table redrawn in place on a terminal, a line per trial event otherwise; "
        "2 and 3 add Ray Tune's own output (its verbosity 1 and 2) to those lines",
    )


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

    p = sub.add_parser("train", help="train one model (one trial, no Ray)")
    p.add_argument("--config", metavar="YAML", help="run config: TrainConfig fields as a mapping")
    p.add_argument(
        "--out", metavar="DIR", help="output directory (default results/train/<model>-<time>)"
    )
    add_train_flags(p)
    add_data_args(p)

    add_model_commands(sub)
    p = sub.add_parser("data", help="show what a data source holds")
    p.add_argument("--json", action="store_true", help="print splits -> class -> count as JSON")
    add_data_args(p)

    p = sub.add_parser("report", help="rebuild report.md/report.json from a results directory")
    p.add_argument("experiment", metavar="DIR")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="first evaluate best/best.pt on the test split again and fail (exit 1) unless it "
        "scores what final.json records",
    )
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="first bring an experiment an earlier fer-search wrote up to date: close trials "
        "left RUNNING in optuna.db, rebuild its TensorBoard runs from the trials' files",
    )

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
        # bench.bench_options.FIGURE_GROUPS (not imported: the bench package imports torch)
        choices=("data", "pipeline", "overhead", "asha", "memory", "checkpoint", "rungs", "scale"),
        help="measure only this figure group (repeatable); writes bench[-quick]-GROUP.*; "
        "scale (simulated trials at cluster scale) runs only when named",
    )
    add_data_args(p)
    return parser


def add_tta_and_device(parser: argparse.ArgumentParser, tta_help: str | None) -> None:
    """--tta (bare: flip) and --device, as every command that runs a checkpoint takes them."""
    parser.add_argument(
        "--tta", nargs="?", const="flip", default="none", choices=TTA_CHOICES, help=tta_help
    )
    parser.add_argument("--device", default="auto")


def add_model_commands(sub: SubParsers) -> None:
    """`evaluate`, `compare` and `predict`: commands that read a checkpoint."""
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or its directory")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="split to evaluate (default test = PrivateTest; select models on val)",
    )
    add_tta_and_device(p, "test-time augmentation (--tta = flip)")
    p.add_argument("--out", metavar="DIR", help="where to write metrics JSON and PNG")
    add_data_args(p)

    p = sub.add_parser(
        "compare",
        help="two models on the same images: accuracy difference, its 95 %% interval, p-value",
    )
    for name, which in (("a", "A"), ("b", "B")):
        p.add_argument(
            name,
            metavar=which,
            help="a checkpoint (best.pt or its directory) or an experiment folder (its best model)",
        )
    p.add_argument(
        "--split",
        choices=("val", "test"),
        default="test",
        help="split to compare on (default test = PrivateTest; select models on val)",
    )
    add_tta_and_device(p, "test-time augmentation for both (--tta = flip)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_data_args(p)

    add_predict_command(sub)
    add_export_command(sub)


def add_predict_command(sub: SubParsers) -> None:
    p = sub.add_parser(
        "predict", help="classify image files or a video's faces (optionally find faces first)"
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--detect-faces",
        action="store_true",
        help="find faces first (pip install 'fer-search[faces]'; docs/faces.md)",
    )
    p.add_argument("--face-detector", metavar="NAME", help="yunet (default) or haar (fallback)")
    p.add_argument("--min-face-pixels", type=int, metavar="N", help="smallest face (default 24)")
    p.add_argument(
        "--annotate", metavar="DIR", help="with --detect-faces: write annotated copies here"
    )
    add_tta_and_device(p, None)
    group = p.add_argument_group("video (with --detect-faces, instead of IMAGE paths)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--video", metavar="FILE", help="a video file OpenCV can read")
    source.add_argument("--camera", type=int, metavar="N", help="camera number N (0 = first)")
    group.add_argument(
        "--smooth",
        type=float,
        metavar="A",
        help="per tracked face, probs = A * previous + (1 - A) * this frame's "
        f"(default {SMOOTH}; 0 = off)",
    )
    group.add_argument("--every", type=int, metavar="N", help="classify every Nth frame only")
    group.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    for flag, kind, metavar, text in VIDEO_FACE_FLAGS:
        group.add_argument(flag, type=kind, metavar=metavar, help=text)


VIDEO_FACE_FLAGS = (  # predict --video: when faces are looked for and reported (docs/faces.md)
    ("--detect-every", int, "N", "detect faces in every Nth classified frame, follow them "
     "between (default 2)"),
    ("--confirm", int, "N", "report a face once detected in N frames in a row (default 3)"),
    ("--max-miss", int, "N", "a face missed in N detection frames in a row has left (default 5)"),
    ("--min-face", float, "F", "ignore faces under F of the frame's shorter side (default 0.06)"),
    ("--rotate", int, "DEG", "turn frames 90, 180 or 270 degrees clockwise (a sideways phone)"),
)  # fmt: skip


def add_export_command(sub: SubParsers) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as ONNX or TorchScript, check it against PyTorch, time it",
        description="The exported model takes float32 (N, 1, 48, 48) gray pixels 0-255 and "
        "returns class probabilities (N, C); class names, input spec and the checkpoint's "
        "metrics are stored in the file. Without --data it is checked on the data of the "
        "experiment the checkpoint belongs to (experiment.json) if they are still there, else "
        "on ./data, else on the demo data.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or its directory")
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help='onnx (needs pip install "fer-search[export]") or torchscript',
    )
    p.add_argument("--out", required=True, metavar="FILE", help="new file: *.onnx, or *.pt/*.ts")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="val",
        help="split the exported model is checked on (default val = PublicTest); exit 1 when "
        "its accuracy differs from the checkpoint's by more than 0.1 pp",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=20,
        metavar="N",
        help="latency: median of N timed runs at batch 1 and 64 (after 3 warm-up runs; 0 = skip)",
    )
    p.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads for the latency (0 = all)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_data_args(p)
