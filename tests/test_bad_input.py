"""Bad input through the real CLI: exit 2, one line naming the problem and the value, nothing
written.

Every case runs `python -m fer_search ...` in a subprocess, as a user would, from an empty
working directory and with `--storage` pointing at a results root that already holds a finished
experiment. Afterwards: exit code 2; exactly one `fer-search[ COMMAND]: error: ...` line on
stderr that holds the bad value (and the close match, when there is one), any other stderr line
a `note:` about the data; no traceback; nothing on stdout; the working directory still empty; the
results root and the input files byte-identical. Most cases fail before Ray or torch is
imported, in about a second.

The modules' own tests check the same validators in-process and in more variants
(tests/test_data.py, test_space.py, test_cli.py, test_engine.py); this table checks that each
kind of mistake reaches the user as one clean line through the real entry point.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import run_fer_search

ERROR_LINE = re.compile(r"^fer-search( [a-z]+)?: error: ")
USAGES = ("Training", "PublicTest", "PrivateTest")

SPACE = """\
name: tiny
experiment: {epochs: 2, grace_period: 1, num_samples: 2, cpus_per_trial: 1}
params:
  model: simple_cnn
  width: 8
  lr: {type: loguniform, low: 1e-3, high: 0.1}
"""


# ---------------------------------------------------------------- inputs
def fer_csv(usages: tuple[str, ...] = USAGES, per_class: int = 1) -> str:
    """A small, valid Kaggle fer2013.csv: every class `per_class` times in every usage."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage in usages:
        for label in range(7):
            for _ in range(per_class):
                pixels = " ".join(map(str, rng.integers(0, 256, 2304)))
                lines.append(f"{label},{pixels},{usage}")
    return "\n".join(lines) + "\n"


def replace_line(text: str, index: int, new: str) -> str:
    lines = text.splitlines()
    lines[index] = new
    return "\n".join(lines) + "\n"


def png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48), 128, dtype=np.uint8)).save(path)


def make_inputs(root: Path) -> None:
    """Every bad file the table names, plus a valid space and checkpoints, under `root`."""
    good = fer_csv()
    first = good.splitlines()[1]
    label, pixels, usage = first.split(",")
    files: dict[str, str | bytes] = {
        "space.yaml": SPACE,
        "empty.csv": "",
        "header-only.csv": "emotion,pixels,Usage\n",
        "truncated.csv.gz": gzip.compress(good.encode())[:5000],
        "columns.csv": good.replace("emotion,pixels,Usage", "label,pixels,Usage", 1),
        "short-row.csv": replace_line(good, 1, f"{label},{pixels.rsplit(' ', 1)[0]},{usage}"),
        "pixel-256.csv": replace_line(good, 1, f"{label},{pixels.rsplit(' ', 1)[0]} 256,{usage}"),
        "pixel-text.csv": replace_line(good, 1, f"{label},{pixels.rsplit(' ', 1)[0]} abc,{usage}"),
        "label-7.csv": replace_line(good, 1, f"7,{pixels},{usage}"),
        "label-x.csv": replace_line(good, 1, f"x,{pixels},{usage}"),
        "no-test.csv": fer_csv(USAGES[:2]),
        "binary.csv": b"\x00\xff\xfe" * 64,
        "a-file": "not a directory\n",
        "garbage.pt": b"this is not a checkpoint\n" * 8,
        "empty.pt": b"",
    }
    for name, content in files.items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    faces = root / "faces"
    for split in ("train", "test"):
        for emotion in ("angyr" if split == "train" else "angry", "happy", "sad"):
            png(faces / split / emotion / "0.png")
    (root / "no-fer" / "notes.txt").parent.mkdir()
    (root / "no-fer" / "notes.txt").write_text("holiday photos\n")
    (root / "not-an-experiment").mkdir()
    (root / "not-an-experiment" / "leaderboard.csv").write_text("trial_id\n")
    (root / "no-checkpoint").mkdir()

    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, root / "foreign.pt")
    torch.save([1, 2, 3], root / "list.pt")


def make_results(root: Path) -> None:
    """A results root holding a finished experiment `old`, as a search leaves it."""
    old = root / "old"
    (old / "trial_abc" / "checkpoint_000001").mkdir(parents=True)
    (old / "experiment.json").write_text('{"name": "old", "finished": "2025-01-01T00:00:00"}\n')
    (old / "leaderboard.csv").write_text("trial_id,status,val_acc\nabc,completed,0.61\n")
    (old / "space.yaml").write_text(SPACE)
    (old / "trial_abc" / "progress.csv").write_text("epoch,val_acc\n1,0.5\n2,0.61\n")
    (old / "trial_abc" / "checkpoint_000001" / "checkpoint.pt").write_bytes(os.urandom(256))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` -> a hash of its bytes ('dir' for a directory)."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    make_inputs(root)
    return root


@pytest.fixture(scope="module")
def listener():
    """A TCP port that accepts connections but is not Ray (for the auth case)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


# ---------------------------------------------------------------- the table
def search(*extra: str) -> list[str]:
    """A search that would run (valid space, small demo data), plus the bad part; a flag given
    twice takes its last value."""
    return ["--space", "{in}/space.yaml", "--data", "demo", "--demo-size", "0.25", *extra]


def space_file() -> list[str]:
    """A search whose space file is the case's YAML text (written to {case} by the test)."""
    return ["--space", "{case}", "--data", "demo", "--demo-size", "0.25"]


def with_param(line: str) -> str:
    return SPACE + f"  {line}\n"


# (id, argv, needles, space text or None, extra environment)
CASES: list[tuple[str, list[str], list[str], str | None, dict[str, str]]] = [
    # ------------------------------------------------ data files
    ("data missing", search("--data", "{in}/nope.csv"), ["nope.csv", "does not exist"], None, {}),
    ("data empty", search("--data", "{in}/empty.csv"), ["empty.csv", "empty"], None, {}),
    ("data header only", search("--data", "{in}/header-only.csv"), ["no data rows"], None, {}),
    (
        "data truncated gzip",
        search("--data", "{in}/truncated.csv.gz"),
        ["truncated.csv.gz", "truncated or corrupt"],
        None,
        {},
    ),
    (
        "data wrong columns",
        search("--data", "{in}/columns.csv"),
        ["columns.csv", "emotion", "label"],
        None,
        {},
    ),
    (
        "data short pixel row",
        search("--data", "{in}/short-row.csv"),
        ["line 2", "2303 values", "2304"],
        None,
        {},
    ),
    ("data pixel 256", search("--data", "{in}/pixel-256.csv"), ["line 2", "'256'"], None, {}),
    ("data pixel text", search("--data", "{in}/pixel-text.csv"), ["line 2", "'abc'"], None, {}),
    ("data label 7", search("--data", "{in}/label-7.csv"), ["line 2", "'7'", "0..6"], None, {}),
    ("data label x", search("--data", "{in}/label-x.csv"), ["line 2", "'x'"], None, {}),
    (
        "data empty test split",
        search("--data", "{in}/no-test.csv"),
        ["PrivateTest", "test split"],
        None,
        {},
    ),
    ("data binary", search("--data", "{in}/binary.csv"), ["binary.csv", "not a CSV"], None, {}),
    (
        "data unknown class folder",
        search("--data", "{in}/faces"),
        ["'train/angyr'", "did you mean 'angry'"],
        None,
        {},
    ),
    (
        "data directory without FER2013",
        search("--data", "{in}/no-fer"),
        ["no-fer", "no FER2013"],
        None,
        {},
    ),
    (
        "data FER+ file missing",
        search("--ferplus", "{in}/fer2013new.csv"),
        ["fer2013new.csv"],
        None,
        {},
    ),
    ("data demo size 0", search("--demo-size", "0"), ["--demo-size", "0"], None, {}),
    (
        "data class set typo",
        search("--class-set", "drop_disgust"),
        ["--class-set", "'drop_disgust'", "'drop-disgust'"],
        None,
        {},
    ),
    # ------------------------------------------------ search spaces
    (
        "space YAML syntax",
        space_file(),
        ["case.yaml:8:", "invalid YAML"],
        SPACE + "  dropout: {type: uniform, low: 0.1\n  hflip: 0.5\n",
        {},
    ),
    (
        "space duplicate key",
        space_file(),
        ["duplicate key 'width'"],
        with_param("width: 16"),
        {},
    ),
    ("space empty file", space_file(), ["case.yaml", "empty"], "# nothing\n", {}),
    (
        "space unknown top-level key",
        space_file(),
        ["'parms'", "did you mean 'params'"],
        SPACE.replace("params:", "parms:"),
        {},
    ),
    (
        "space unknown experiment key",
        space_file(),
        ["experiment.epoch", "did you mean 'epochs'"],
        SPACE.replace("epochs: 2", "epoch: 2"),
        {},
    ),
    (
        "space unknown parameter",
        space_file(),
        ["'lrr'", "did you mean 'lr'"],
        SPACE.replace("  lr:", "  lrr:"),
        {},
    ),
    (
        "space unknown parameter key",
        space_file(),
        ["params.dropout", "'lowe'", "did you mean 'low'"],
        with_param("dropout: {type: uniform, lowe: 0.1, high: 0.5}"),
        {},
    ),
    (
        "space unknown type",
        space_file(),
        ["'loguniforn'", "did you mean 'loguniform'"],
        SPACE.replace("type: loguniform", "type: loguniforn"),
        {},
    ),
    (
        "space unknown architecture",
        space_file(),
        ["'densnet169'", "did you mean 'densenet169'"],
        SPACE.replace("model: simple_cnn", "model: densnet169"),
        {},
    ),
    (
        "space unknown architecture choice",
        space_file(),
        ["params.model", "'resnet50'"],
        SPACE.replace(
            "model: simple_cnn", "model: {type: categorical, choices: [simple_cnn, resnet50]}"
        ),
        {},
    ),
    (
        "space number as bad text",
        space_file(),
        ["params.lr.low", "'1e-5x'"],
        SPACE.replace("low: 1e-3", "low: 1e-5x"),
        {},
    ),
    (
        "space low >= high",
        space_file(),
        ["params.dropout", "low=0.5", "high=0.5"],
        with_param("dropout: {type: uniform, low: 0.5, high: 0.5}"),
        {},
    ),
    (
        "space log range <= 0",
        space_file(),
        ["params.weight_decay", "low=0"],
        with_param("weight_decay: {type: loguniform, low: 0, high: 0.01}"),
        {},
    ),
    (
        "space empty categorical",
        space_file(),
        ["params.optimizer", "choices is empty"],
        with_param("optimizer: {type: categorical, choices: []}"),
        {},
    ),
    (
        "space choices not a list",
        space_file(),
        ["params.optimizer", "'sgd'"],
        with_param("optimizer: {type: categorical, choices: sgd}"),
        {},
    ),
    (
        "space range on a text setting",
        space_file(),
        ["params.balance", "str"],
        with_param("balance: {type: uniform, low: 0, high: 1}"),
        {},
    ),
    (
        "space wrong value type",
        space_file(),
        ["batch_size", "'big'"],
        with_param("batch_size: big"),
        {},
    ),
    (
        "space epochs not a number",
        space_file(),
        ["experiment.epochs", "'two'"],
        SPACE.replace("epochs: 2", "epochs: two"),
        {},
    ),
    (
        "space weights file missing",
        space_file(),
        ["params.weights_path", "nope.pth", "is not a file"],
        with_param("weights_path: nope.pth"),
        {},
    ),
    ("space file missing", search("--space", "{in}/nope.yaml"), ["nope.yaml"], None, {}),
    (
        "space shipped name typo",
        search("--space", "densnet"),
        ["'densnet'", "did you mean 'densenet'"],
        None,
        {},
    ),
    # ------------------------------------------------ CLI flags
    ("cli no space", ["--data", "demo"], ["no search space", "--space"], None, {}),
    (
        "cli unknown flag",
        search("--epochz", "3"),
        ["--epochz", "did you mean '--epochs'"],
        None,
        {},
    ),
    (
        "cli unknown train flag",
        ["train", "--data", "demo", "--widht", "8", "--out", "{res}/train"],
        ["--widht", "did you mean '--width'"],
        None,
        {},
    ),
    ("cli num-samples 0", search("--num-samples", "0"), ["--num-samples", "0"], None, {}),
    ("cli num-samples text", search("--num-samples", "abc"), ["--num-samples", "'abc'"], None, {}),
    ("cli epochs negative", search("--epochs", "-1"), ["--epochs", "-1"], None, {}),
    ("cli max-concurrent 0", search("--max-concurrent", "0"), ["--max-concurrent", "0"], None, {}),
    ("cli top-k 0", search("--top-k", "0"), ["--top-k", "0"], None, {}),
    ("cli cpus 0", search("--cpus", "0"), ["--cpus", "0"], None, {}),
    ("cli cpus-per-trial 0", search("--cpus-per-trial", "0"), ["--cpus-per-trial", "0"], None, {}),
    (
        "cli grace period > epochs",
        search("--epochs", "2", "--grace-period", "5"),
        ["--grace-period=5", "epochs=2"],
        None,
        {},
    ),
    (
        "cli reduction factor 1",
        search("--reduction-factor", "1"),
        ["--reduction-factor", "1"],
        None,
        {},
    ),
    ("cli time budget 0", search("--time-budget", "0"), ["--time-budget", "0"], None, {}),
    ("cli gpus negative", search("--gpus", "-1"), ["--gpus", "-1"], None, {}),
    (
        "cli gpus-per-trial 1.5",
        search("--gpus-per-trial", "1.5"),
        ["--gpus-per-trial", "1.5"],
        None,
        {},
    ),
    ("cli gpus-per-trial 2", search("--gpus-per-trial", "2"), ["--gpus-per-trial", "2"], None, {}),
    ("cli gpus-per-trial 0", search("--gpus-per-trial", "0"), ["--gpus-per-trial", "0"], None, {}),
    (
        "cli gpus-per-trial negative",
        search("--gpus-per-trial", "-0.5"),
        ["--gpus-per-trial", "-0.5"],
        None,
        {},
    ),
    # ------------------------------------------------ checkpoints
    (
        "checkpoint missing",
        ["evaluate", "--checkpoint", "{in}/nope.pt", "--data", "demo", "--out", "{res}/ev"],
        ["nope.pt", "does not exist"],
        None,
        {},
    ),
    (
        "checkpoint unreadable",
        ["evaluate", "--checkpoint", "{in}/garbage.pt", "--data", "demo", "--out", "{res}/ev"],
        ["garbage.pt", "cannot be read safely"],
        None,
        {},
    ),
    (
        "checkpoint empty file",
        ["evaluate", "--checkpoint", "{in}/empty.pt", "--data", "demo", "--out", "{res}/ev"],
        ["empty.pt", "cannot be read safely"],
        None,
        {},
    ),
    (
        "checkpoint from another program",
        ["evaluate", "--checkpoint", "{in}/foreign.pt", "--data", "demo", "--out", "{res}/ev"],
        ["foreign.pt", "not a fer-search checkpoint"],
        None,
        {},
    ),
    (
        "checkpoint not a mapping",
        ["predict", "--checkpoint", "{in}/list.pt", "{in}/faces/test/sad/0.png"],
        ["list.pt", "not a fer-search checkpoint"],
        None,
        {},
    ),
    (
        "checkpoint directory without one",
        ["evaluate", "--checkpoint", "{in}/no-checkpoint", "--data", "demo", "--out", "{res}/ev"],
        ["no-checkpoint", "does not exist"],
        None,
        {},
    ),
    # ------------------------------------------------ experiments and results
    (
        "existing experiment without --resume",
        search("--name", "old"),
        ["old", "already exists", "--resume"],
        None,
        {},
    ),
    (
        "resume a non-experiment directory",
        ["--resume", "{in}/not-an-experiment"],
        ["not-an-experiment", "not a fer-search experiment"],
        None,
        {},
    ),
    (
        "resume a half-made experiment",
        ["--resume", "{res}/old"],
        ["old", "not a fer-search experiment"],
        None,
        {},
    ),
    (
        "resume a missing directory",
        ["--resume", "{in}/nope"],
        ["nope", "not a fer-search experiment"],
        None,
        {},
    ),
    (
        "results root under a file",
        search("--storage", "{in}/a-file/results"),
        ["a-file/results", "not writable", "Not a directory"],
        None,
        {},
    ),
    (
        "results root in /proc",
        search("--storage", "/proc/fer-search-results"),
        ["/proc/fer-search-results", "not writable"],
        None,
        {},
    ),
    # ------------------------------------------------ cluster
    (
        "address unreachable",
        search("--address", "127.0.0.1:1"),
        ["'127.0.0.1:1'", "cannot connect", "Connection refused"],
        None,
        {},
    ),
    (
        "address ray:// unreachable",
        search("--address", "ray://127.0.0.1:1"),
        ["'ray://127.0.0.1:1'", "cannot connect"],
        None,
        {},
    ),
    (
        "address unknown host",
        search("--address", "no-such-host.invalid:6379"),
        ["no-such-host.invalid", "cannot connect"],
        None,
        {},
    ),
    (
        "address from RAY_ADDRESS unreachable",
        search(),
        ["'127.0.0.1:1'", "cannot connect"],
        None,
        {"RAY_ADDRESS": "127.0.0.1:1"},
    ),
    (
        "cluster token required but none here",
        search("--address", "{listener}"),
        ["{listener}", "no authentication token"],
        None,
        {"RAY_AUTH_MODE": "token"},  # and HOME has no .ray/auth_token
    ),
    (
        "cluster token mismatch",
        search("--address", "{gcs}"),
        ["{gcs}", "rejected this machine's token", "RAY_AUTH_TOKEN"],
        None,
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-token"},
    ),
    (
        "cluster token auth off here",
        search("--address", "{gcs}"),
        ["{gcs}", "RAY_AUTH_MODE is unset", "RAY_AUTH_MODE=token"],
        None,
        {"RAY_AUTH_TOKEN": "right-token"},
    ),
    # ------------------------------------------------ resources (checked before Ray starts)
    ("gpus beyond the machine", search("--gpus", "4"), ["--gpus 4", "has 0"], None, {}),
]
COMMANDS = ("train", "evaluate", "predict", "data", "report")


@pytest.mark.parametrize(
    ("argv", "needles", "space", "env"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_writes_nothing(
    inputs: Path, listener: str, token_gcs: str, tmp_path: Path, argv, needles, space, env
):
    if argv[-2:] == ["--gpus", "4"]:
        import torch

        if torch.cuda.device_count() >= 4:
            pytest.skip("this machine has 4 GPUs")
    results, cwd, case = tmp_path / "results", tmp_path / "cwd", tmp_path / "case.yaml"
    make_results(results)
    cwd.mkdir()
    if space is not None:
        case.write_text(space)
    values = {"in": str(inputs), "res": str(results), "case": str(case)}
    values.update(listener=listener, gcs=token_gcs)
    argv = [arg.format(**values) for arg in argv]
    if argv[0] not in COMMANDS and "--resume" not in argv and "--storage" not in argv:
        argv += ["--storage", str(results)]
    before, inputs_before = snapshot(results), snapshot(inputs)

    environ = {k: v.format(**values) for k, v in env.items()}
    environ["HOME"] = str(tmp_path)  # no ~/.ray/auth_token
    proc = run_fer_search(
        *argv, env=environ, drop_env=["RAY_", "FER_SEARCH_F"], cwd=cwd, timeout=120
    )

    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert len(errors) == 1, proc.stderr
    others = [line for line in lines if line not in errors and not line.startswith("note: ")]
    assert not others, proc.stderr
    assert proc.stdout == ""
    for needle in needles:
        assert needle.format(**values) in errors[0], (needle, errors[0])
    assert not any(cwd.iterdir()), "wrote into the working directory"
    assert snapshot(results) == before, "changed the results root"
    assert snapshot(inputs) == inputs_before, "changed an input file"


def test_a_number_as_a_yaml_string_is_not_an_error(tmp_path: Path):
    """`1e-5` is a string to YAML 1.1; the space must parse it: the first error is the data's."""
    space = tmp_path / "strings.yaml"
    space.write_text(SPACE.replace("low: 1e-3", "low: 1e-5").replace("0.1}", "'1e-1'}"))
    proc = run_fer_search(
        "--space", str(space), "--data", str(tmp_path / "x"), cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2 and "data path" in proc.stderr, proc.stderr
    assert "strings.yaml" not in proc.stderr
