"""The selected ensemble against the top-2 average on PrivateTest, paired over the same images
(fer_search.stats: bootstrap interval, McNemar's exact p). Run after the search from the
experiment folder, which still holds the trial checkpoints (they are not committed):

    PYTHONPATH=. python results/reference/selected_vs_top_k.py /tmp/exp/reference-run4

Both ensembles were chosen and scored by the search's final evaluation (final.json); this only
compares their predictions on the same test images, as final.json now does for new searches.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

from fer_search import engine, stats
from fer_search.data import load_recorded


def test_probs(exp: Path, trial_dir: str, epochs: int, images: np.ndarray) -> np.ndarray:
    """The trial's checkpoint of its last reported epoch, the one the final evaluation used (a
    trial the time budget stopped mid-epoch may have left a later one behind)."""
    found = [engine.load_checkpoint(c) for c in (exp / trial_dir).glob("checkpoint_*/*.pt")]
    (payload,) = [p for p in found if int(p["epoch"]) == epochs]
    model = engine.model_from_checkpoint({**payload, "state_dict": engine.best_state_dict(payload)})
    return engine.predict_probs(model, images)


exp = Path(sys.argv[1])
final = json.loads((exp / "final.json").read_text())
data = load_recorded(json.loads((exp / "experiment.json").read_text())["data_args"])
test = data.splits["test"]
with (exp / "leaderboard.csv").open() as f:
    rows = {r["trial_id"]: r for r in csv.DictReader(f)}
chosen = final["selected_ensemble"]
probs = {
    t: test_probs(exp, rows[t]["trial_dir"], int(rows[t]["epochs"]), test.images)
    for t in chosen["members"]
}
selected = sum(w * probs[t] for t, w in zip(chosen["members"], chosen["weights"], strict=True))
top_k = np.mean([probs[t] for t in final["ensemble"]["trial_ids"]], axis=0)
result = stats.paired_comparison(test.labels, selected.argmax(1), top_k.argmax(1))
result.update(
    selected_test_acc=float((selected.argmax(1) == test.labels).mean()),
    top_k_test_acc=float((top_k.argmax(1) == test.labels).mean()),
)
print(json.dumps(result, indent=2))
