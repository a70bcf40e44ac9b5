"""Does a search's headline number reproduce? Evaluate the stored best checkpoint again on the
test split the search used and compare its accuracy with final.json's `best.test_acc`.

The data are loaded again from experiment.json's `data_args`; the accuracy is taken without
test-time augmentation, on the best available device, as the final evaluation took it. A
mismatch raises RecheckFailed (not the user's mistake); a directory that cannot be rechecked
(no final.json, no best/best.pt, no recorded data) is a UserError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_search.errors import RecheckFailed, UserError

__all__ = ["CHECKPOINT", "TOLERANCE", "recheck"]

CHECKPOINT = Path("best") / "best.pt"
# Float noise only: one test image of FER2013's 3,589 moves accuracy by 2.8e-4.
TOLERANCE = 1e-6


def recheck(exp_dir: Path | str) -> str:
    """Re-evaluate `<exp_dir>/best/best.pt` on the test split; return one line saying it
    matches final.json's best.test_acc, or raise RecheckFailed naming both figures."""
    from fer_search import engine
    from fer_search.data import load_recorded

    exp = Path(exp_dir)
    record, recorded = read_records(exp)
    checkpoint = exp / CHECKPOINT
    if not checkpoint.is_file():
        raise UserError(f"cannot recheck {str(exp)!r}: it has no {CHECKPOINT.as_posix()}")
    payload = engine.load_checkpoint(checkpoint)
    data = load_recorded(record["data_args"])
    if "test" not in data.splits:
        raise UserError(f"cannot recheck {str(exp)!r}: {data.source} has no test split")
    test = data.splits["test"]
    if list(test.class_names) != list(payload["class_names"]):
        raise UserError(
            f"cannot recheck {str(exp)!r}: {CHECKPOINT.as_posix()} predicts "
            f"{list(payload['class_names'])} but the recorded data have {list(test.class_names)}"
        )
    where = engine.resolve_device("auto")
    model = engine.model_from_checkpoint(payload, where)
    probs = engine.predict_probs(model, test.images, device=where)
    right, n = int((probs.argmax(1) == test.labels).sum()), len(test.labels)
    measured = right / n if n else 0.0
    if abs(measured - recorded) > TOLERANCE:
        raise RecheckFailed(
            f"recheck failed: {CHECKPOINT.as_posix()} scores test_acc {measured:.6f} "
            f"({right} of {n} test images, on {where.type}) but {exp / 'final.json'} records "
            f"{recorded:.6f}"
        )
    return (
        f"recheck passed: {CHECKPOINT.as_posix()} scores test_acc {measured:.6f} "
        f"({right} of {n} test images, on {where.type}), as {exp / 'final.json'} records"
    )


def read_records(exp: Path) -> tuple[dict[str, Any], float]:
    """experiment.json (with data_args) and final.json's best.test_acc, or a UserError."""
    from fer_search.report.load import read_json

    if not exp.is_dir():
        raise UserError(f"results directory {str(exp)!r} does not exist")
    if not (exp / "experiment.json").is_file():
        raise UserError(f"{str(exp)!r} is not a fer-search experiment (no experiment.json)")
    if not (exp / "final.json").is_file():
        raise UserError(
            f"cannot recheck {str(exp)!r}: it has no final.json (the final evaluation did not run)"
        )
    record, final = read_json(exp / "experiment.json"), read_json(exp / "final.json")
    if not isinstance(record, dict) or not isinstance(record.get("data_args"), dict):
        raise UserError(
            f"cannot recheck {str(exp)!r}: experiment.json records no data_args, so the data "
            "the search used are not known"
        )
    best = final.get("best") if isinstance(final, dict) else None
    recorded = best.get("test_acc") if isinstance(best, dict) else None
    if not isinstance(recorded, int | float) or isinstance(recorded, bool):
        raise UserError(f"cannot recheck {str(exp)!r}: final.json records no best.test_acc")
    return record, float(recorded)
