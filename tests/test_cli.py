"""The `fer-search` commands train, evaluate, predict and data, in-process and as a subprocess.

One real `train` on the demo data (simple_cnn, width 8, one epoch) feeds evaluate and predict.
Every mistake a user can make must end as exit code 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import run_fer_search, run_python
from PIL import Image

from fer_search.cli import main
from fer_search.cli.logs import install_logging
from fer_search.config import EMOTIONS
from fer_search.engine import load_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--data", "demo", "--epochs", "1", "--width", "8", "--batch-size", "64"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m fer_search ARGS` as a user runs it (one torch thread: see above)."""
    return run_fer_search(*args, env={"OMP_NUM_THREADS": "1"}, cwd=cwd, timeout=timeout)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """main(ARGS) in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse: --help, usage errors
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> str:
    """Exit 2 and exactly one non-empty line on stderr, holding every fragment."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert code == 2, err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `fer-search train` run directory (trained in a subprocess)."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    done = run_cli("train", *TINY, "--threads", "1", "--out", str(out), cwd=root)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"^epoch +1/1 .*val", done.stdout, re.MULTILINE)
    assert "best val accuracy" in done.stdout and str(out / "best.pt") in done.stdout
    pct = r"\d+\.\d\d"
    interval = rf"best val accuracy {pct} % \[{pct}, {pct}\] \(95 % interval\) at epoch 1"
    assert re.search(interval, done.stdout), done.stdout
    return out


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """A 48x48 grey PNG and a 200x150 RGB JPEG."""
    rng = np.random.default_rng(0)
    small = tmp_path / "img1.png"
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(small)
    big = tmp_path / "img2.jpg"
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(big)
    return [small, big]


# --------------------------------------------------------------------------- help, import


def test_import_does_not_load_heavy_libraries():
    code = (
        "import json, sys\n"
        "import fer_search.cli\n"
        "fer_search.cli.build_parser()\n"
        "print(json.dumps([m for m in ('torch', 'ray', 'optuna') if m in sys.modules]))\n"
    )
    done = run_python("-c", code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_help_lists_every_command_and_each_is_reached_by_name(capsys, tmp_path):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    listed = re.findall(r"^    ([a-z]+) ", out, re.MULTILINE)  # the COMMAND list of the help
    assert sorted(listed) == [
        "bench",
        "compare",
        "data",
        "evaluate",
        "export",
        "predict",
        "report",
        "search",
        "train",
    ]
    # each is its own command, not taken for the bare form `fer-search --space X` (a search)
    for command in listed:
        code, out, err = cli(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: fer-search {command} "), (command, out, err)
    # no arguments at all: the help, not an error
    code, out, _ = cli(capsys)
    assert code == 0 and "evaluate" in out

    done = run_cli("--help", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in listed)


def test_the_cli_shows_library_log_records_on_stderr(capsys):
    # library modules log (no print): the command shows INFO as written, a warning marked
    logger = logging.getLogger("fer_search.tuning.run")
    try:
        install_logging(1)
        install_logging(1)  # a second main() in one process replaces its handler
        logger.info("searching tiny: 2 trials")
        logger.warning("2 trial(s) failed")
        logger.debug("hidden at --verbose 1")
        out, err = capsys.readouterr()
        assert out == "" and err == "searching tiny: 2 trials\nwarning: 2 trial(s) failed\n"
        install_logging(2)
        logger.debug("shown at --verbose 2")
        assert capsys.readouterr().err == "shown at --verbose 2\n"
    finally:  # leave no handler on a stream this test's capture closes
        root = logging.getLogger("fer_search")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.NOTSET)


def test_usage_error_is_one_line(capsys, tmp_path):
    code, _, err = cli(capsys, "evaluate", "--checkpoint", "x.pt", "--split", "dev")
    assert_user_error(code, err, "invalid choice", "--split")


# --------------------------------------------------------------------------- train


def test_train_writes_a_complete_run_directory(run):
    assert {"best.pt", "last.pt", "config.yaml", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert not list(run.glob("*.tmp"))

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "simple_cnn"
    assert (config["epochs"], config["width"], config["batch_size"]) == (1, 8, 64)

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1
    assert metrics["data"] == "demo"
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert metrics["best_val_acc"] == metrics["history"][0]["val_acc"]
    low, high = metrics["best_val_acc_ci95"]
    assert low <= metrics["best_val_acc"] <= high

    best = load_checkpoint(run / "best.pt")
    assert best["class_names"] == list(EMOTIONS)
    assert best["model_args"]["width"] == 8
    assert best["best_val_acc"] == metrics["best_val_acc"]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_train_refuses_to_overwrite_results(run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".pt", ".json")}
    code, _, err = cli(capsys, "train", *TINY, "--out", str(run))
    assert_user_error(code, err, str(run), "not empty", "--out")
    assert {name: (run / name).read_bytes() for name in before} == before

    a_file = run / "metrics.json"
    code, _, err = cli(capsys, "train", *TINY, "--out", str(a_file))
    assert_user_error(code, err, "is a file")


def test_train_config_file_with_string_numbers(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    # YAML reads 1e-3 without a dot as a string; flags override the file
    config.write_text('lr: "1e-3"\nweight_decay: 1e-4\noptimizer: adamw\nwidth: 16\nepochs: 1\n')
    out = tmp_path / "out"
    code, stdout, err = cli(
        capsys,
        "train",
        "--config",
        str(config),
        "--data",
        "demo",
        "--width",
        "8",
        "--batch-size",
        "64",
        "--out",
        str(out),
    )
    assert code == 0, err
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["lr"] == pytest.approx(1e-3) and isinstance(written["lr"], float)
    assert written["weight_decay"] == pytest.approx(1e-4)
    assert written["optimizer"] == "adamw"
    assert written["width"] == 8
    assert "best val accuracy" in stdout
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("lrr: 0.1\n", ["unknown setting 'lrr'", "did you mean 'lr'?"]),
        ("lr: fast\n", ["lr='fast'", "float"]),
        ("schedule: cosin\n", ["schedule='cosin'", "did you mean 'cosine'?"]),
        ("- lr\n", ["mapping"]),
        ("lr: [1\n", ["not valid YAML"]),
    ],
    ids=["unknown-key", "bad-number", "bad-choice", "not-a-mapping", "bad-yaml"],
)
def test_train_bad_config_file(capsys, tmp_path, text, fragments):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "train", "--config", str(config), *TINY, "--out", str(out))
    assert_user_error(code, err, "run.yaml", *fragments)
    assert not out.exists()


def test_train_missing_config_file(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "--config", str(tmp_path / "nope.yaml"), *TINY)
    assert_user_error(code, err, "nope.yaml", "does not exist")


def test_train_unknown_model(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(capsys, "train", *TINY, "--model", "densnet169", "--out", str(out))
    assert_user_error(code, err, "unknown model 'densnet169'", "did you mean 'densenet169'?")
    # nothing written, so the corrected command can use the same --out
    assert not out.exists()


def test_train_bad_flag_value(capsys, tmp_path):
    code, _, err = cli(capsys, "train", *TINY, "--dropout", "1.5", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "dropout", "1.5")


# --------------------------------------------------------------------------- evaluate


def test_evaluate_prints_a_table_and_writes_metrics(run, capsys):
    code, out, err = cli(
        capsys,
        "evaluate",
        "--checkpoint",
        str(run / "best.pt"),
        "--data",
        "demo",
        "--split",
        "test",
    )
    assert code == 0, err
    assert "simple_cnn on test (tta=none)" in out
    assert all(any(line.startswith(name) for line in out.splitlines()) for name in EMOTIONS)
    assert "accuracy" in out and "n=350" in out

    metrics = json.loads((run / "eval-test.json").read_text())
    assert (metrics["split"], metrics["tta"], metrics["n"]) == ("test", "none", 350)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (7, 7) and matrix.sum() == 350
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 350)
    # the accuracy and macro-F1 with their 95 % intervals, as written to the JSON
    low, high = metrics["accuracy_ci95"]
    assert low <= metrics["accuracy"] <= high
    assert (
        f"accuracy {metrics['accuracy'] * 100:.2f} % (95 % CI {low * 100:.2f}-{high * 100:.2f} %)"
        in out
    )
    low, high = metrics["macro_f1_ci95"]
    assert low <= metrics["macro_f1"] <= high
    assert f"macro-F1 {metrics['macro_f1']:.4f} (95 % CI {low:.4f}-{high:.4f})" in out
    assert (run / "eval-test-confusion.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("flags", "stem"),
    [(["--tta"], "eval-val-flip"), (["--tta", "crops"], "eval-val-crops")],
    ids=["flip", "crops"],
)
def test_evaluate_with_tta(run, capsys, tmp_path, flags, stem):
    out_dir = tmp_path / "eval"
    code, out, err = cli(
        capsys,
        "evaluate",
        "--checkpoint",
        str(run),  # a run directory means its best.pt
        "--split",
        "val",
        *flags,
        "--data",
        "demo",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    assert f"tta={stem.rsplit('-', 1)[1]}" in out
    metrics = json.loads((out_dir / f"{stem}.json").read_text())
    assert metrics["n"] == 350 and metrics["tta"] == stem.rsplit("-", 1)[1]
    assert (out_dir / f"{stem}-confusion.png").read_bytes()[:8] == PNG_MAGIC


def test_evaluate_missing_checkpoint(capsys, tmp_path):
    code, _, err = cli(
        capsys, "evaluate", "--checkpoint", str(tmp_path / "best.pt"), "--data", "demo"
    )
    assert_user_error(code, err, "best.pt", "does not exist")


def test_evaluate_foreign_checkpoint(capsys, tmp_path):
    foreign = tmp_path / "model.pt"
    torch.save({"a": 1}, foreign)
    code, _, err = cli(capsys, "evaluate", "--checkpoint", str(foreign), "--data", "demo")
    assert_user_error(code, err, "not a fer-search checkpoint")


# --------------------------------------------------------------------------- predict


def test_predict_prints_an_emotion_per_image(run, images, capsys):
    code, out, err = cli(capsys, "predict", "--checkpoint", str(run / "best.pt"), *map(str, images))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images, strict=True):
        assert line.startswith(f"{image}: ")
        assert line.split(": ", 1)[1].split(" ", 1)[0] in EMOTIONS


def test_predict_json_in_a_subprocess(run, images, tmp_path):
    done = run_cli(
        "predict", "--checkpoint", str(run / "best.pt"), "--json", "--tta", "crops",
        *map(str, images), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    results = json.loads(done.stdout)
    assert [entry["image"] for entry in results] == [str(image) for image in images]
    for entry in results:
        probs = entry["probabilities"]
        assert list(probs) == list(EMOTIONS)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert entry["emotion"] == max(probs, key=probs.get)
        assert entry["probability"] == pytest.approx(max(probs.values()), abs=1e-4)


def face_photo(path: Path) -> Path:
    canvas = np.full((150, 200), 200, dtype=np.uint8)
    yy, xx = np.mgrid[:150, :200]
    canvas[((yy - 75) / 50) ** 2 + ((xx - 100) / 40) ** 2 < 1] = 120  # a face-ish oval
    canvas[60:68, 80:90] = canvas[60:68, 110:120] = 30  # eyes
    canvas[100:106, 88:112] = 40  # mouth
    Image.fromarray(canvas).save(path)
    return path


def test_predict_detect_faces(run, capsys, tmp_path):
    """With OpenCV (the [faces] extra): boxes or "no face found"; without: how to install it."""
    photo = face_photo(tmp_path / "photo.png")
    args = ["predict", "--checkpoint", str(run / "best.pt"), "--detect-faces", str(photo)]
    try:
        import cv2
    except ImportError:
        code, _, err = cli(capsys, *args)
        assert_user_error(code, err, "--detect-faces needs OpenCV", "pip install")
        return
    code, out, err = cli(capsys, *args)
    if not (hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "data")):
        assert_user_error(code, err, "Haar cascades", "pip install")
        return
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(line.startswith(str(photo)) for line in lines)
    assert all("no face found" in line or "box=[" in line for line in lines)


class _StubCascade:
    """Stands in for OpenCV's Haar cascade: one face at (10, 20), 60x50."""

    def __init__(self, path: str) -> None:
        assert path.endswith("haarcascade_frontalface_default.xml")

    def detectMultiScale(self, gray, **kwargs):  # noqa: N802  (OpenCV's name)
        assert gray.dtype == np.uint8 and gray.ndim == 2
        return np.array([[10, 20, 60, 50]], dtype=np.int32)


def test_predict_classifies_each_detected_face(run, capsys, tmp_path, monkeypatch):
    stub = types.SimpleNamespace(
        __version__="4.stub",
        CascadeClassifier=_StubCascade,
        data=types.SimpleNamespace(haarcascades=str(tmp_path)),
    )
    monkeypatch.setitem(sys.modules, "cv2", stub)
    photo = face_photo(tmp_path / "photo.png")
    annotated = tmp_path / "annotated"
    base = ["predict", "--checkpoint", str(run / "best.pt"), "--detect-faces", str(photo)]
    base += ["--face-detector", "haar"]  # the stub stands in for the cascade, the fallback

    code, out, err = cli(capsys, *base, "--json", "--annotate", str(annotated))
    assert code == 0, err
    (entry,) = json.loads(out)
    (face,) = entry["faces"]
    assert face["box"] == [10, 20, 60, 50]
    assert face["emotion"] in EMOTIONS
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert Path(entry["annotated"]) == annotated / "photo-annotated.png"
    assert Path(entry["annotated"]).read_bytes()[:8] == PNG_MAGIC

    code, out, err = cli(capsys, *base)
    assert code == 0, err
    assert out.startswith(f"{photo} box=[10, 20, 60, 50]: {face['emotion']} (")

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="5.0"))
    code, _, err = cli(capsys, *base)
    assert_user_error(code, err, "OpenCV 5.0 has no bundled Haar cascades", "pip install")


def test_predict_user_errors(run, images, capsys, tmp_path):
    best = str(run / "best.pt")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    cases = [
        (["--checkpoint", str(tmp_path / "none.pt"), str(images[0])], ["none.pt", "not exist"]),
        (["--checkpoint", best, str(tmp_path / "missing.png")], ["missing.png", "not exist"]),
        (["--checkpoint", best, str(not_an_image)], ["notes.png", "cannot be read as an image"]),
        (["--checkpoint", best, "--annotate", str(tmp_path), str(images[0])], ["--detect-faces"]),
        (["--checkpoint", best, "--tta", "mirror", str(images[0])], ["invalid choice"]),
    ]
    for args, fragments in cases:
        code, out, err = cli(capsys, "predict", *args)
        assert_user_error(code, err, *fragments)
        assert out == ""


# --------------------------------------------------------------------------- data


def test_data_json_counts_per_split_and_class(capsys):
    code, out, err = cli(capsys, "data", "--data", "demo", "--json")
    assert code == 0, err
    summary = json.loads(out)
    counts = summary["splits"]
    assert list(counts) == ["train", "val", "test"]
    assert counts["train"] == {name: 300 for name in EMOTIONS}
    assert counts["val"] == counts["test"] == {name: 50 for name in EMOTIONS}


def test_data_table(capsys):
    code, out, err = cli(capsys, "data", "--data", "demo")
    assert code == 0, err
    assert out.startswith("data: demo")
    assert all(name in out for name in EMOTIONS)


def test_data_missing_path(capsys, tmp_path):
    code, _, err = cli(capsys, "data", "--data", "/nonexistent")
    assert_user_error(code, err, "'/nonexistent'", "does not exist")
    # and as a user sees it: no traceback from the real entry point either
    done = run_cli("data", "--data", "/nonexistent", cwd=tmp_path, timeout=60)
    assert_user_error(done.returncode, done.stderr, "/nonexistent")
    assert done.stdout == ""


def test_labels_0_to_6_are_the_fer2013_emotions_in_order(tmp_path):
    """FER2013's label numbers mean angry, disgust, fear, happy, sad, surprise, neutral: a CSV
    where label k has k + 1 images is reported class by class in that order."""
    pixels = " ".join(["128"] * 48 * 48)
    rows = [f"{k},{pixels},Training" for k in range(7) for _ in range(k + 1)]
    rows += [f"{k},{pixels},{usage}" for k in range(7) for usage in ("PublicTest", "PrivateTest")]
    data = tmp_path / "fer2013.csv"
    data.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    proc = run_fer_search("data", "--data", str(data), "--json", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["splits"]["train"]
    emotions = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert list(counts) == emotions and list(counts.values()) == [1, 2, 3, 4, 5, 6, 7]


def test_every_tta_the_cli_offers_is_one_the_engine_runs():
    import numpy as np

    from fer_search.cli.parser import TTA_CHOICES
    from fer_search.engine import predict_probs
    from fer_search.models import create_model

    model = create_model("simple_cnn", 7, width=8)
    images = np.zeros((3, 48, 48), dtype=np.uint8)
    for mode in TTA_CHOICES:
        probs = predict_probs(model, images, tta=mode)
        assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-5), mode


def test_the_final_line_gives_every_accuracy_with_its_interval():
    import re

    from fer_search.cli.commands import test_line

    ci = [0.70, 0.74]
    final = {
        "best": {"test_acc": 0.72, "test_acc_ci95": ci, "test_acc_flip": 0.73,
                 "test_acc_flip_ci95": ci},
        "tta": {"chosen": "tencrop", "test_acc": 0.735, "test_acc_ci95": ci},
        "ensemble": {"k": 3, "test_acc": 0.75, "test_acc_ci95": ci},
        "selected_ensemble": {"test_acc": 0.76, "test_acc_ci95": ci},
    }  # fmt: skip
    line = test_line(final)
    figures = re.findall(r"(\d+\.\d\d) %( \[70\.00, 74\.00\])?", line)
    assert [f[0] for f in figures] == ["72.00", "73.50", "75.00", "76.00"]
    assert all(f[1] for f in figures), line  # each one with its interval
    assert "tencrop TTA (chosen on val)" in line
    final["tta"]["chosen"] = "none"
    assert "val chose no TTA; flip: 73.00 % [70.00, 74.00]" in test_line(final)
