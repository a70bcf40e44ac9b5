"""`fer-search export`, `fer_search.export` and `fer_search.exporter`: a checkpoint as ONNX or
TorchScript that takes raw pixels and gives what fer-search's own inference gives, with its
metadata inside; every registered model exports; a wrong export or a wrong flag is one line on
stderr.

The checkpoints are tiny: one epoch of simple_cnn at width 8 on random images, and random-init
models for the architecture sweep (parity needs no trained weights).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_splits

import fer_search
from fer_search import engine
from fer_search import exporter as export_layer
from fer_search.augment import normalize
from fer_search.cli import main
from fer_search.config import EMOTIONS, TrainConfig
from fer_search.data import FERData, FERSplit
from fer_search.errors import UserError
from fer_search.models import create_model, list_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))
ONNX = pytest.param(
    "onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason='needs pip install "fer-search[export]"')
)
FORMATS = [ONNX, "torchscript"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@pytest.fixture(scope="module")
def data() -> FERData:
    train, val = random_splits(n_train=64, n_val=24)
    test = FERSplit("test", val.images[::-1].copy(), val.labels.copy(), EMOTIONS)
    return FERData({"train": train, "val": val, "test": test}, EMOTIONS, "random")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data, one_torch_thread) -> Path:
    """best.pt of one epoch of simple_cnn (width 8) on the random images."""
    out = tmp_path_factory.mktemp("export") / "run"
    config = {"model": "simple_cnn", "width": 8, "epochs": 1, "batch_size": 32, "threads": 1}
    fer_search.train(config, data=data, out=out)
    return out / "best.pt"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_exported(path: Path, fmt: str, pixels: np.ndarray) -> np.ndarray:
    """The exported file as a user runs it, without fer-search."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: pixels})[0]
    with torch.no_grad():
        return torch.jit.load(str(path)).eval()(torch.from_numpy(pixels)).numpy()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_takes_raw_pixels_and_gives_what_fer_search_predicts(
    checkpoint, data, tmp_path, fmt
):
    out = tmp_path / f"model{SUFFIX[fmt]}"
    result = fer_search.export(checkpoint, fmt, out, data=data, runs=2)
    assert result.path == out and out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left
    assert result.max_abs_diff < 1e-4 and result.images == len(data.splits["val"])
    assert result.accuracy_exported == result.accuracy_pytorch
    assert set(result.latency_ms) == {1, 64} and all(ms > 0 for ms in result.latency_ms.values())

    payload = engine.load_checkpoint(checkpoint)
    model = engine.model_from_checkpoint(payload)
    images = data.splits["test"].images
    for n in (1, 5):  # the batch dimension is dynamic
        pixels = images[:n, None].astype(np.float32)
        probs = run_exported(out, fmt, pixels)
        assert probs.shape == (n, len(EMOTIONS)) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        expected = engine.predict_probs(model, images[:n])
        np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_file_carries_class_names_input_spec_and_the_checkpoint_s_metrics(
    checkpoint, data, tmp_path, fmt
):
    out = tmp_path / f"model{SUFFIX[fmt]}"
    fer_search.export(checkpoint, fmt, out, data=data, runs=0)
    meta = export_layer.read_metadata(out)
    payload = engine.load_checkpoint(checkpoint)
    assert meta["class_names"] == list(EMOTIONS)
    assert meta["input"]["shape"] == ["N", 1, 48, 48] and meta["input"]["dtype"] == "float32"
    assert meta["output"]["shape"] == ["N", len(EMOTIONS)]
    assert meta["fer_search_version"] == fer_search.__version__
    source = meta["checkpoint"]
    assert source["model"] == "simple_cnn" and source["config"] == payload["config"]
    assert source["best_val_acc"] == payload["best_val_acc"]
    assert source["best_epoch"] == payload["best_epoch"] == 1
    assert source["best_epoch_stats"]["val_acc"] == payload["best_val_acc"]
    if fmt == "onnx":  # readable with onnx alone
        import onnx

        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(props["fer_search"]) == meta


def random_checkpoint(path: Path, name: str, images: np.ndarray) -> Path:
    """A random-init model whose BatchNorm statistics come from `images`: with the initial
    statistics deep nets (ResNet101) saturate their softmax, so any export would match."""
    model = create_model(name, num_classes=len(EMOTIONS))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # the plain average over what it sees
    with torch.no_grad():
        model.train()(normalize(torch.from_numpy(images)))
    engine.save_checkpoint(path, engine.model_payload(model, TrainConfig(model=name), EMOTIONS))
    return path
    return path


HEAVY = {"vgg16", "resnet101", "densenet169"}  # 5-20 s each per format on 2 busy cores


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models()]
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_registered_model_exports(tmp_path, data, name, fmt):
    small = FERData({"val": FERSplit("val", *_head(data.splits["val"], 8))}, EMOTIONS, "random")
    ckpt = random_checkpoint(tmp_path / "best.pt", name, data.splits["train"].images[:16])
    result = fer_search.export(ckpt, fmt, tmp_path / f"m{SUFFIX[fmt]}", data=small, runs=0)
    assert result.max_abs_diff < 1e-4, result
    assert export_layer.read_metadata(result.path)["checkpoint"]["model"] == name


def _head(split: FERSplit, n: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    return split.images[:n], split.labels[:n], split.class_names


# --------------------------------------------------------------------------- the command
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_command_prints_parity_and_latency(checkpoint, capsys, tmp_path, fmt):
    out = tmp_path / "sub" / f"model{SUFFIX[fmt]}"  # its folder is created
    args = ["--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]
    code, stdout, err = cli(capsys, "export", *args, "--data", "demo", "--demo-size", "0.1",
                            "--runs", "2", "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert out.is_file()
    assert "max |dprob|" in stdout and "accuracy pytorch" in stdout
    assert "batch 1 " in stdout and "batch 64 " in stdout and "median of 2 runs" in stdout
    assert "1 CPU threads" in stdout
    code, stdout, err = cli(capsys, "export", *args[:-1], str(out.with_stem("again")),
                            "--data", "demo", "--demo-size", "0.1", "--runs", "0", "--json",
                            "--split", "test")  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["split"] == "test" and result["images"] == 35 and result["latency_ms"] == {}


def test_a_model_that_does_not_match_fails_with_one_line_and_writes_nothing(
    checkpoint, capsys, tmp_path, monkeypatch
):
    # any difference is too much: the exported model's figures cannot pass
    monkeypatch.setattr(export_layer, "ACCURACY_TOLERANCE", -1.0)
    out = tmp_path / "model.pt"
    code, _, err = cli(capsys, "export", "--checkpoint", str(checkpoint), "--format",
                       "torchscript", "--out", str(out), "--data", "demo", "--demo-size",
                       "0.1")  # fmt: skip
    errors = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "export failed its check" in errors[0] and "not written" in errors[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--format", "onx", "--out", "m.onnx"], ["onx", "did you mean 'onnx'"]),
        (["--format", "onnx", "--out", "m.pt"], ["m.pt", "*.onnx"]),
        (["--format", "torchscript", "--out", "m.onnx"], ["m.onnx", "*.pt or *.ts"]),
        (["--format", "torchscript", "--out", "file/m.pt"], ["file/m.pt", "cannot be written"]),
        (["--format", "torchscript", "--out", "taken.pt"], ["taken.pt", "never overwritten"]),
        (["--format", "torchscript", "--out", "dir.pt"], ["dir.pt", "is a directory"]),
        (["--format", "torchscript", "--runs", "-1", "--out", "m.pt"], ["--runs", "runs=-1"]),
        (["--format", "torchscript", "--split", "dev", "--out", "m.pt"], ["invalid choice"]),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(checkpoint, capsys, tmp_path, monkeypatch, flags,
                                           fragments):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("file").write_text("a file, not a folder")
    Path("taken.pt").write_text("the user's file")
    Path("dir.pt").mkdir()
    code, _, err = cli(capsys, "export", "--checkpoint", str(checkpoint), *flags)
    line = one_error_line(err)
    assert code == 2 and all(f in line for f in fragments), line
    assert Path("taken.pt").read_text() == "the user's file"


def test_a_missing_checkpoint_is_one_line(capsys, tmp_path):
    missing = tmp_path / "none.pt"
    code, _, err = cli(capsys, "export", "--checkpoint", str(missing), "--format",
                       "torchscript", "--out", str(tmp_path / "m.pt"))  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and "none.pt" in line and "does not exist" in line


def test_onnx_without_onnxruntime_says_what_to_install(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    code, _, err = cli(capsys, "export", "--checkpoint", str(checkpoint), "--format", "onnx",
                       "--out", str(tmp_path / "m.onnx"))  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and 'pip install "fer-search[export]"' in line
    with pytest.raises(UserError, match="onnxruntime"):
        fer_search.export(checkpoint, "onnx", tmp_path / "m.onnx")


def test_without_data_it_checks_on_the_experiment_s_data_when_still_there(
    checkpoint, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no ./data here: the fallback is the demo data
    exp = tmp_path / "exp"
    (exp / "best").mkdir(parents=True)
    (exp / "best" / "best.pt").write_bytes(checkpoint.read_bytes())
    recorded = {"path": "demo", "demo_size": 0.2, "cache": False}
    (exp / "experiment.json").write_text(json.dumps({"data_args": recorded}))
    result = fer_search.export(exp, "torchscript", tmp_path / "a.pt", runs=0)
    assert result.data == "demo" and result.images == 70  # demo_size 0.2: 70 val images

    recorded["path"] = str(tmp_path / "gone.csv")
    (exp / "experiment.json").write_text(json.dumps({"data_args": recorded}))
    result = fer_search.export(exp / "best" / "best.pt", "torchscript", tmp_path / "b.pt", runs=0)
    assert result.images == 350  # the demo data at its default size
    assert "gone.csv" in capsys.readouterr().err
