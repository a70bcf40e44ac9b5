"""Export every registered architecture to ONNX and TorchScript with `fer_search.export` and
tabulate its check (max |dprob|, accuracy PyTorch vs exported) and latency on this CPU.

    python benchmarks/export_table.py                         # shared fer2013.csv.gz, PrivateTest
    python benchmarks/export_table.py --models simple_cnn --images 256 --runs 5

The trained row is `--reference` (default results/reference/best/best.pt) on the whole
split; the other rows are random-init models (the registry's defaults, 7 classes, seed 0,
BatchNorm statistics from 256 train images) checked on the first `--images` images of the
split (parity needs no trained weights, and DenseNet169 or ResNet101 on all 3,589 images takes
minutes per pass on a CPU). Latency: milliseconds per image at batch 1 and 64, the median of
`--runs` timed runs after 3 warm-up runs, for the exported model and, by the same protocol,
for the PyTorch model it came from (torch eager, fp32).

Writes results/benchmarks/export.json and export.md (numbers only; the exported files go to a
temporary directory). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import fer_search  # noqa: E402
from fer_search import engine  # noqa: E402
from fer_search import exporter as ex  # noqa: E402
from fer_search.augment import normalize  # noqa: E402
from fer_search.config import TrainConfig  # noqa: E402
from fer_search.data import FERData  # noqa: E402
from fer_search.models import create_model, list_models  # noqa: E402

SHARED_CSV = ROOT.parent / "shared/data/fer2013/fer2013.csv.gz"
REFERENCE = ROOT / "results/reference/best/best.pt"


def random_checkpoint(path: Path, name: str, class_names: list[str], images: np.ndarray) -> Path:
    """A random-init model whose BatchNorm statistics come from `images` (with the initial
    statistics ResNet101's softmax saturates to one class, and any export would match)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(class_names))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # the plain average over what it sees
    with torch.no_grad():
        model.train()(normalize(torch.from_numpy(images)))
    engine.save_checkpoint(path, engine.model_payload(model, TrainConfig(model=name), class_names))
    return path


def eager_latency(checkpoint: Path, images: np.ndarray, runs: int) -> dict[int, float]:
    """The PyTorch model's latency, timed as the exported one is."""
    module = ex.PixelsToProbs(engine.model_from_checkpoint(engine.load_checkpoint(checkpoint)))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return {b: ex.time_per_image(run, images, b, runs) for b in ex.LATENCY_BATCHES}


def row(checkpoint: Path, fmt: str, data: FERData, split: str, runs: int, tmp: Path,
        label: str) -> dict[str, Any]:  # fmt: skip
    out = tmp / f"{checkpoint.parent.name}-{fmt}{ex.FORMATS[fmt][0]}"
    result = fer_search.export(checkpoint, fmt, out, data=data, split=split, runs=runs)
    size = out.stat().st_size
    out.unlink()
    return {
        "label": label,
        "model": result.model,
        "format": fmt,
        "images": result.images,
        "max_abs_diff": result.max_abs_diff,
        "accuracy_pytorch": result.accuracy_pytorch,
        "accuracy_exported": result.accuracy_exported,
        "latency_ms": result.latency_ms,
        "threads": result.threads,
        "file_bytes": size,
    }


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], command: str) -> str:
    lines = [
        f"- command: `{command}`",
        f"- date: {info['date']}; data: `{info['data']}`, split {info['split']}",
        f"- machine: {info['platform']}, {info['cpu_count']} CPUs ({info['processor']}), "
        f"{info['threads']} torch/onnxruntime threads, load average at start "
        f"{info['load_average_at_start']} (the CPUs are shared: latencies are noisy)",
        f"- torch {info['torch']}, onnx {info['onnx']}, onnxruntime {info['onnxruntime']}",
        f"- latency: ms per image, median of {info['runs']} runs after {ex.WARMUP_RUNS} warm-up "
        "runs; PyTorch = torch eager fp32, same protocol",
        "",
        "| model | weights | format | images | max \\|Δprob\\| | acc PyTorch | acc exported "
        "| b1 exported | b64 exported | b1 PyTorch | b64 PyTorch | file MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat, eager = r["latency_ms"], r["eager_latency_ms"]
        lines.append(
            f"| {r['model']} | {r['label']} | {r['format']} | {r['images']} | "
            f"{r['max_abs_diff']:.1e} | {r['accuracy_pytorch'] * 100:.2f} % | "
            f"{r['accuracy_exported'] * 100:.2f} % | {lat[1]:.2f} | {lat[64]:.2f} | "
            f"{eager[1]:.2f} | {eager[64]:.2f} | {r['file_bytes'] / 1e6:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_CSV, help="FER2013 file or folder")
    parser.add_argument("--split", default="test", help="default test = PrivateTest")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="a trained best.pt")
    parser.add_argument("--models", nargs="*", default=list_models(), help="random-init rows")
    parser.add_argument("--images", type=int, default=512, help="images for random-init rows")
    parser.add_argument("--formats", nargs="*", default=list(ex.FORMATS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # export() and the eager timing both use it
    command = shlex.join(["python", "benchmarks/export_table.py", *(argv or sys.argv[1:])])
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": str(args.data), "split": args.split, "runs": args.runs,
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **{p: metadata.version(p) for p in ("torch", "onnx", "onnxruntime")},
    }  # fmt: skip
    data = fer_search.load_data(args.data)
    part = data.splits[args.split]
    head = replace(part, images=part.images[: args.images], labels=part.labels[: args.images])
    few = FERData({args.split: head}, data.class_names, data.source)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fer-export-") as tmp_dir:
        tmp = Path(tmp_dir)
        jobs = [(args.reference, data, "trained (reference)")] if args.reference else []
        for name in args.models:
            (tmp / name).mkdir()
            train = data.splits["train"].images[:256]
            ckpt = random_checkpoint(tmp / name / "best.pt", name, list(data.class_names), train)
            jobs.append((ckpt, few, "random init"))
        for checkpoint, source, label in jobs:
            eager = eager_latency(checkpoint, part.images, args.runs)
            for fmt in args.formats:
                r = row(checkpoint, fmt, source, args.split, args.runs, tmp, label)
                rows.append({**r, "eager_latency_ms": eager})
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "machine": info, "rows": rows}
    (args.out / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(rows, info, command)
    (args.out / "export.md").write_text("# Export: parity and latency\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
