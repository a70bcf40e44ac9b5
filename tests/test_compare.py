"""`fer-search compare A B` and `fer_search.compare`: two models on the same images of a
split, with the paired difference, its interval and McNemar's p-value. Two tiny simple_cnn
models are trained once on the demo data; an experiment folder is faked around one of them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import one_line_error, run_fer_search

import fer_search
from fer_search import UserError, stats
from fer_search.cli import main
from fer_search.config import EMOTIONS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_fer_search(*args, env={"OMP_NUM_THREADS": "1"}, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def demo():
    return fer_search.load_data("demo")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo, one_torch_thread) -> Path:
    """root/one (1 epoch) and root/two (2 epochs): run directories with best.pt; root/exp: an
    experiment folder whose best model is one's."""
    root = tmp_path_factory.mktemp("compare")
    for name, epochs in (("one", 1), ("two", 2)):
        config = {"model": "simple_cnn", "width": 8, "epochs": epochs, "batch_size": 64}
        fer_search.train({**config, "threads": 1}, data=demo, out=root / name)
    (root / "exp" / "best").mkdir(parents=True)
    (root / "exp" / "experiment.json").write_text("{}")
    shutil.copy(root / "one" / "best.pt", root / "exp" / "best" / "best.pt")
    return root


def test_two_checkpoints_as_json(models, demo):
    done = run_cli(
        "compare", "one", "two/best.pt", "--data", "demo", "--split", "val", "--json", cwd=models
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["split"], result["tta"], result["n"]) == ("val", "none", 350)
    assert result["method"] == stats.METHOD
    assert (result["a"]["path"], result["b"]["path"]) == ("one", "two/best.pt")
    # each side is what `evaluate` reports for it, interval included
    for side, run in (("a", "one"), ("b", "two")):
        metrics = fer_search.evaluate(models / run, data=demo, split="val")
        assert result[side]["accuracy"] == pytest.approx(metrics["accuracy"])
        assert result[side]["ci95"] == pytest.approx(metrics["accuracy_ci95"])
    difference = result["a"]["accuracy"] - result["b"]["accuracy"]
    assert result["difference"] == pytest.approx(difference)
    low, high = result["difference_ci95"]
    assert low <= result["difference"] <= high
    assert result["within_noise"] == (low <= 0 <= high)
    assert 0 <= result["p_value"] <= 1
    assert list(result["per_class"]) == list(EMOTIONS)
    for name, row in result["per_class"].items():
        assert row["difference"] == pytest.approx(row["a"] - row["b"]), name
        recall = metrics["per_class"][name]["recall"]  # metrics: b's (two's) evaluation
        assert row["b"] == pytest.approx(recall), name


def test_an_experiment_against_its_own_best_model_is_no_difference(models):
    done = run_cli("compare", "exp", "one", "--data", "demo", "--json", cwd=models)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["a"]["path"] == str(Path("exp") / "best" / "best.pt")
    assert (result["split"], result["n"]) == ("test", 350)
    assert result["a"]["accuracy"] == result["b"]["accuracy"]
    assert result["difference"] == 0.0 and result["difference_ci95"] == [0.0, 0.0]
    assert result["p_value"] == 1.0 and result["within_noise"] is True
    assert all(row["difference"] == 0.0 for row in result["per_class"].values())


def test_the_text_says_whether_the_difference_is_noise(models, demo, capsys):
    one, two = str(models / "one"), str(models / "two")
    code = main(["compare", one, two, "--data", "demo", "--split", "val", "--tta"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = fer_search.compare(one, two, data=demo, split="val", tta="flip")
    difference, (low, high) = result["difference"] * 100, result["difference_ci95"]
    lines = out.splitlines()
    assert lines[0] == "A vs B on val (tta=flip) of demo"
    assert lines[1].startswith(f"A  {one}") and lines[2].startswith(f"B  {two}")
    a_low, a_high = result["a"]["ci95"]
    assert (
        f"{result['a']['accuracy'] * 100:.2f} % (95 % CI {a_low * 100:.2f}-{a_high * 100:.2f} %)"
        in lines[1]
    )
    assert lines[3].startswith(
        f"A - B  {difference:+.2f} pp (95 % CI {low * 100:+.2f} to {high * 100:+.2f} pp)"
    )
    assert "McNemar p = " in lines[3]
    verdict = "within noise" if result["within_noise"] else "is better (the interval excludes 0)"
    assert verdict in lines[4]
    assert all(any(line.startswith(name) for line in lines) for name in EMOTIONS)


def test_an_unknown_split_is_one_line(models, demo, capsys):
    with pytest.raises(UserError, match="split 'dev' is not in demo"):
        fer_search.compare(models / "one", models / "two", data=demo, split="dev")
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["compare", "a.pt", "b.pt", "--split", "train"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice" in err


def fake_inputs(root: Path) -> None:
    """Bad inputs beside the good models: a foreign file, an unfinished experiment and a
    checkpoint that predicts six classes."""
    torch.save({"weights": 1}, root / "foreign.pt")
    (root / "unfinished").mkdir(exist_ok=True)
    (root / "unfinished" / "experiment.json").write_text("{}")
    payload = torch.load(root / "one" / "best.pt", weights_only=True)
    payload["class_names"] = [name for name in EMOTIONS if name != "disgust"]
    payload["config"]["class_set"] = "drop-disgust"
    torch.save(payload, root / "six.pt")


@pytest.mark.parametrize(
    ("a", "b", "needles"),
    [
        ("nope.pt", "one", ["nope.pt", "does not exist"]),
        ("one", "nope", ["nope", "does not exist"]),
        ("foreign.pt", "one", ["foreign.pt", "not a fer-search checkpoint"]),
        ("unfinished", "one", ["unfinished", "no best/best.pt", "--resume"]),
        ("one", "six.pt", ["six.pt", "different classes"]),
    ],
    ids=["missing A", "missing B", "not a checkpoint", "experiment without a best", "classes"],
)
def test_bad_inputs_are_one_line(models, a, b, needles):
    fake_inputs(models)
    line = one_line_error(run_cli("compare", a, b, "--data", "demo", cwd=models))
    assert all(needle in line for needle in needles), line
