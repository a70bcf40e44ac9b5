"""`fer-search export`: a checkpoint as one self-contained ONNX or TorchScript file, checked
against the PyTorch model on a split and timed on this CPU.

The exported model takes float32 (N, 1, 48, 48) gray images with raw pixel values 0-255 and
returns softmax probabilities (N, C) in the order of its `class_names`; the batch dimension is
dynamic. Normalisation (`augment.scale_pixels`) and the softmax are inside the model, as
`engine.predict_probs` runs it (without test-time augmentation). The file carries one JSON
document (class names, input and output spec, versions, the checkpoint's model, config and
metrics): ONNX in `metadata_props[METADATA_KEY]`, TorchScript in the extra file `EXTRA_FILE`.
`read_metadata` reads either.

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`, opset 17), checked on
torch 2.14.1, onnx 1.23.2 and onnxruntime 1.32.0: it needs no package beyond onnx, exports
DenseNet169 in about 1 s where the dynamo exporter took 21 s (and needs onnxscript), and writes
one file (dynamo writes the weights beside it unless told not to). Both exported every
registered model. torch marks the legacy exporter and TorchScript deprecated; the parity check
every export runs is what would notice if either changed what it writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fer_search.augment import scale_pixels
from fer_search.config import IMAGE_SIZE
from fer_search.errors import ExportMismatch, UserError, did_you_mean

__all__ = [
    "ACCURACY_TOLERANCE",
    "FORMATS",
    "ExportResult",
    "PixelsToProbs",
    "check_target",
    "export_checkpoint",
    "format_result",
    "latencies",
    "load_exported",
    "read_metadata",
    "require_runtime",
    "time_per_image",
]

FORMATS = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}  # format -> file extensions
METADATA_KEY = "fer_search"  # the ONNX metadata_props key
EXTRA_FILE = "fer_search.json"  # the TorchScript extra file
INPUT_NAME, OUTPUT_NAME = "images", "probs"
ONNX_OPSET = 17
ACCURACY_TOLERANCE = 0.001  # 0.1 pp: a few images of FER2013's 3,589, float noise is far less
WARMUP_RUNS, TIMED_RUNS = 3, 20  # latency: the median of TIMED_RUNS runs after WARMUP_RUNS
LATENCY_BATCHES = (1, 64)
Runner = Callable[[np.ndarray], np.ndarray]  # float32 (N, 1, 48, 48) pixels -> probs (N, C)


class PixelsToProbs(nn.Module):
    """A fer-search model with the normalisation before it and the softmax after it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: Tensor) -> Tensor:
        return torch.softmax(self.model(scale_pixels(pixels)).float(), dim=1)


@dataclass
class ExportResult:
    """What `export` wrote and what it measured. Latencies: milliseconds per image by batch
    size, of the exported model on this CPU with `threads` threads (empty when not timed)."""

    path: Path
    format: str
    model: str
    split: str
    data: str
    images: int
    max_abs_diff: float
    accuracy_pytorch: float
    accuracy_exported: float
    latency_ms: dict[int, float] = field(default_factory=dict)
    threads: int = 0
    timed_runs: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


# ---------------------------------------------------------------- checks before the work
def check_target(fmt: str, out: str | Path | None) -> Path:
    """The output file, once the format is known, the extension fits it and the file can be
    written (its folder is created); an existing file is never overwritten."""
    if fmt not in FORMATS:
        hint = did_you_mean(fmt, FORMATS) or f"; use {' or '.join(FORMATS)}"
        raise UserError(f"unknown export format {fmt!r}{hint}")
    if not out:
        raise UserError(f"export needs --out FILE ({' or '.join(FORMATS[fmt])})")
    path = Path(out)
    if path.suffix.lower() not in FORMATS[fmt]:
        raise UserError(
            f"--out {str(path)!r}: a {fmt} file is named *{' or *'.join(FORMATS[fmt])}, "
            f"not *{path.suffix or ' (no extension)'}"
        )
    if path.exists():
        what = "is a directory" if path.is_dir() else "exists (never overwritten)"
        raise UserError(f"--out {str(path)!r} {what}; choose another file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary(path), "wb"):
            pass
        temporary(path).unlink()
    except OSError as exc:
        raise UserError(f"--out {str(path)!r} cannot be written ({exc.strerror})") from None
    return path


def temporary(path: Path) -> Path:
    """Where the file is written until it has passed the parity check."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def require_runtime(fmt: str) -> None:
    """ONNX export and its check need onnx and onnxruntime (the `export` extra)."""
    if fmt != "onnx":
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"ONNX export needs onnx and onnxruntime ({exc.name} is missing): "
            'pip install "fer-search[export]"'
        ) from None


# ---------------------------------------------------------------- writing
def metadata(payload: dict[str, Any], checkpoint: Path, fmt: str) -> dict[str, Any]:
    """The JSON document stored in the exported file."""
    from fer_search import __version__

    classes = list(payload["class_names"])
    best_epoch = payload.get("best_epoch")
    best_stats = [h for h in payload.get("history") or [] if h.get("epoch") == best_epoch]
    return {
        "fer_search_version": __version__,
        "torch_version": torch.__version__,
        "format": fmt,
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "class_names": classes,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["N", 1, IMAGE_SIZE, IMAGE_SIZE],
            "values": "gray pixel values 0-255, not normalised (the model normalises)",
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["N", len(classes)],
            "values": "softmax probabilities in class_names order",
        },
        "checkpoint": {
            "file": checkpoint.name,
            "sha256": sha256(checkpoint),
            "model": payload["model_args"].get("name"),
            "model_args": payload["model_args"],
            "epoch": payload.get("epoch"),
            "best_epoch": best_epoch,
            "best_val_acc": payload.get("best_val_acc"),
            "best_epoch_stats": best_stats[-1] if best_stats else None,
            "config": payload.get("config"),
        },
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(module: PixelsToProbs, fmt: str, path: Path, meta: dict[str, Any]) -> None:
    example = torch.full((2, 1, IMAGE_SIZE, IMAGE_SIZE), 128.0)
    with warnings.catch_warnings(), torch.no_grad():
        # torch's deprecation notices for both exporters, and the tracer's note that the
        # models' Python shape checks become constants: the input shape is fixed but for N
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "onnx":
            write_onnx(module, example, path, meta)
        else:
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})


def write_onnx(module: nn.Module, example: Tensor, path: Path, meta: dict[str, Any]) -> None:
    import onnx

    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    proto.doc_string = f"fer-search {meta['checkpoint']['model']}: {INPUT_NAME} -> {OUTPUT_NAME}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


# ---------------------------------------------------------------- reading back
def read_metadata(path: str | Path) -> dict[str, Any]:
    """The fer-search JSON document of an exported file (.onnx, or TorchScript .pt/.ts)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"exported model {str(file)!r} does not exist")
    if file.suffix.lower() == ".onnx":
        require_runtime("onnx")
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(file), load_external_data=False).metadata_props
        }
        text = props.get(METADATA_KEY)
    else:
        extra = {EXTRA_FILE: ""}
        jit_load(file, extra)
        text = extra[EXTRA_FILE] or None
    if text is None:
        raise UserError(
            f"{str(file)!r} holds no fer-search metadata (not made by fer-search export?)"
        )
    return dict(json.loads(text))


def load_exported(path: str | Path, fmt: str, threads: int) -> Runner:
    """Run the exported file as a user would: onnxruntime on the CPU, or torch.jit.load."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    scripted = jit_load(Path(path)).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return scripted(torch.from_numpy(x)).numpy()

    return run


def jit_load(path: Path, extra_files: dict[str, Any] | None = None) -> Any:
    with warnings.catch_warnings():  # deprecated in torch 2.14, still what TorchScript users call
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)


def as_pixels(images_u8: np.ndarray) -> np.ndarray:
    """uint8 (N, 48, 48) -> the exported model's input, float32 (N, 1, 48, 48) 0-255."""
    return np.ascontiguousarray(images_u8[:, None], dtype=np.float32)


def run_all(run: Runner, images_u8: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [run(as_pixels(images_u8[i : i + batch])) for i in range(0, len(images_u8), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def time_per_image(run: Runner, images_u8: np.ndarray, batch: int, runs: int) -> float:
    """Milliseconds per image at this batch size: the median of `runs` timed calls on one
    batch of the split's images (repeated when the split is smaller) after WARMUP_RUNS calls."""
    pixels = as_pixels(np.resize(images_u8, (batch, *images_u8.shape[1:])))
    for _ in range(WARMUP_RUNS):
        run(pixels)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(pixels)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch * 1e3


# ---------------------------------------------------------------- the whole export
def export_checkpoint(
    payload: dict[str, Any],
    checkpoint: Path,
    fmt: str,
    out: Path,
    part: Any,
    data_source: str,
    *,
    runs: int = TIMED_RUNS,
    threads: int = 0,
) -> ExportResult:
    """Write `payload`'s model to `out` (checked by `check_target`), compare it with the
    PyTorch model on the split `part` and time it with `threads` CPU threads (0: torch's
    number). The file appears at `out` only once its accuracy matches; otherwise ExportMismatch
    names both figures and nothing is left."""
    from fer_search import engine

    n = len(part.labels)
    if n == 0:
        raise UserError(f"split {part.name!r} of {data_source} has no images to check against")
    model = engine.model_from_checkpoint(payload, "cpu")
    meta = metadata(payload, checkpoint, fmt)
    threads = threads or torch.get_num_threads()
    tmp = temporary(out)
    try:
        write(PixelsToProbs(model).eval(), fmt, tmp, meta)
        run = load_exported(tmp, fmt, threads)
        expected = engine.predict_probs(model, part.images, device="cpu")
        got = run_all(run, part.images)
        acc_pt = float((expected.argmax(1) == part.labels).mean())
        acc_ex = float((got.argmax(1) == part.labels).mean())
        diff = float(np.abs(got - expected).max())
        if abs(acc_ex - acc_pt) > ACCURACY_TOLERANCE or not np.isfinite(diff):
            raise ExportMismatch(
                f"export failed its check: the {fmt} model scores {acc_ex * 100:.2f} % on "
                f"{part.name} ({n} images of {data_source}) but the checkpoint scores "
                f"{acc_pt * 100:.2f} % (max |dprob| {diff:.2g}); {out} not written"
            )
        latency = latencies(run, part.images, runs, threads)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(
        path=out, format=fmt, model=str(meta["checkpoint"]["model"]), split=part.name,
        data=data_source, images=n, max_abs_diff=diff, accuracy_pytorch=acc_pt,
        accuracy_exported=acc_ex, latency_ms=latency, threads=threads,
        timed_runs=runs if latency else 0, metadata=meta,
    )  # fmt: skip


def latencies(run: Runner, images_u8: np.ndarray, runs: int, threads: int) -> dict[int, float]:
    """Milliseconds per image at each of LATENCY_BATCHES (empty when runs is 0)."""
    if runs <= 0:
        return {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # TorchScript runs on torch's threads; onnxruntime has its own
    try:
        return {batch: time_per_image(run, images_u8, batch, runs) for batch in LATENCY_BATCHES}
    finally:
        torch.set_num_threads(before)


def format_result(result: ExportResult) -> str:
    """What the CLI prints."""
    size = result.path.stat().st_size / 1e6 if result.path.is_file() else 0.0
    engine = "onnxruntime" if result.format == "onnx" else "torch.jit"
    delta = (result.accuracy_exported - result.accuracy_pytorch) * 100
    lines = [
        f"exported {result.model} to {result.path} ({result.format}, {size:.1f} MB)",
        f"check on {result.split} ({result.images} images of {result.data}): max |dprob| "
        f"{result.max_abs_diff:.2g}; accuracy pytorch {result.accuracy_pytorch * 100:.2f} %, "
        f"{result.format} {result.accuracy_exported * 100:.2f} % ({delta:+.2f} pp; "
        f"limit {ACCURACY_TOLERANCE * 100:.1f} pp)",
    ]
    if result.latency_ms:
        per = ", ".join(f"batch {b} {ms:.3f} ms" for b, ms in result.latency_ms.items())
        lines.append(
            f"latency per image ({engine}, {result.threads} CPU threads; median of "
            f"{result.timed_runs} runs after {WARMUP_RUNS} warm-up runs): {per}"
        )
    return "\n".join(lines)
