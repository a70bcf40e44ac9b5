"""recheck: the stored best checkpoint, evaluated again on the data the search used, scores
final.json's best.test_acc, or the recheck fails loudly. The experiment folder is built by hand
(a one-epoch model on demo data, final.json from the final evaluation's own final_record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import fer_search
from fer_search import engine
from fer_search.errors import RecheckFailed, UserError
from fer_search.recheck import recheck
from fer_search.tuning.final import Member, final_record


@pytest.fixture(scope="module")
def demo():
    return fer_search.load_data("demo", demo_size=0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo, one_torch_thread) -> Path:
    out = tmp_path_factory.mktemp("train") / "one"
    config = {"model": "simple_cnn", "width": 8, "epochs": 1, "batch_size": 32, "threads": 1}
    fer_search.train(config, data=demo, out=out)
    return out / "best.pt"


def make_experiment(root: Path, checkpoint: Path, demo, data_args: dict) -> Path:
    """experiment.json, best/best.pt and final.json as a search leaves them."""
    exp = root / "exp"
    (exp / "best").mkdir(parents=True)
    shutil.copy(checkpoint, exp / "best" / "best.pt")
    (exp / "experiment.json").write_text(json.dumps({"name": "exp", "data_args": data_args}))
    payload = engine.load_checkpoint(checkpoint)
    model = engine.model_from_checkpoint(payload)
    val, test = demo.splits["val"], demo.splits["test"]
    member = Member(
        index=0,
        config=payload["config"],
        val=engine.predict_probs(model, val.images),
        test=engine.predict_probs(model, test.images),
        test_tta=engine.predict_probs(model, test.images, tta="flip"),
    )
    final = final_record([member], [{"trial_id": "t0"}], val, test)
    (exp / "final.json").write_text(json.dumps(final, default=str))
    return exp


def test_a_stored_result_reproduces(tmp_path, trained, demo):
    exp = make_experiment(tmp_path, trained, demo, demo.load_args)
    recorded = json.loads((exp / "final.json").read_text())["best"]["test_acc"]
    line = recheck(exp)
    assert line.startswith("recheck passed") and f"{recorded:.6f}" in line and "\n" not in line


def test_an_experiment_recorded_with_the_cli_s_flag_names_reproduces(tmp_path, trained, demo):
    old_args = {"data": "demo", "class_set": None, "demo_size": 0.1, "no_cache": False}
    assert recheck(make_experiment(tmp_path, trained, demo, old_args)).startswith("recheck passed")


def test_a_tampered_final_json_fails_the_recheck(tmp_path, trained, demo):
    exp = make_experiment(tmp_path, trained, demo, demo.load_args)
    final = json.loads((exp / "final.json").read_text())
    true_acc = final["best"]["test_acc"]
    final["best"]["test_acc"] = true_acc + 1 / len(demo.splits["test"])  # one image more
    (exp / "final.json").write_text(json.dumps(final))
    with pytest.raises(RecheckFailed) as failed:
        recheck(exp)
    message = str(failed.value)
    assert f"{true_acc:.6f}" in message and f"{final['best']['test_acc']:.6f}" in message
    assert "\n" not in message and not isinstance(failed.value, UserError)


def test_what_cannot_be_rechecked_is_a_user_error(tmp_path, trained, demo):
    with pytest.raises(UserError, match="does not exist"):
        recheck(tmp_path / "nowhere")
    exp = make_experiment(tmp_path, trained, demo, demo.load_args)
    (exp / "best" / "best.pt").unlink()
    with pytest.raises(UserError, match="no best/best.pt"):
        recheck(exp)
    (exp / "final.json").unlink()
    with pytest.raises(UserError, match="no final.json"):
        recheck(exp)
    (exp / "final.json").write_text(json.dumps({"best": {"test_acc": 0.5}}))
    shutil.copy(trained, exp / "best" / "best.pt")
    (exp / "experiment.json").write_text(json.dumps({"name": "exp"}))
    with pytest.raises(UserError, match="records no data_args"):
        recheck(exp)


def test_report_recheck_through_the_cli_exits_1_on_a_tampered_result(tmp_path, trained, demo):
    from helpers import run_fer_search

    exp = make_experiment(tmp_path, trained, demo, demo.load_args)
    shutil.copy(exp / "final.json", tmp_path / "kept.json")
    (exp / "leaderboard.csv").write_text("trial_id,status,val_acc\nt0,completed,0.2\n")
    ok = run_fer_search("report", str(exp), "--recheck")
    assert ok.returncode == 0 and "recheck passed" in ok.stdout, ok.stderr[-2000:]
    final = json.loads((exp / "final.json").read_text())
    final["best"]["test_acc"] += 0.01
    (exp / "final.json").write_text(json.dumps(final))
    (exp / "report.md").unlink()
    bad = run_fer_search("report", str(exp), "--recheck")
    errors = [line for line in bad.stderr.splitlines() if line.startswith("fer-search:")]
    assert bad.returncode == 1 and len(errors) == 1 and "recheck failed" in errors[0]
    assert "Traceback" not in bad.stderr and not (exp / "report.md").exists()
