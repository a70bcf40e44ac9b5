"""The experiment keys that make a search survive dead workers: `checkpoint_every` and
`max_failures`, read from a space file or a CLI flag, checked, and saved with the space."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fer_search.errors import UserError
from fer_search.space import apply_overrides, load_space, load_space_dict

PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "lr": {"type": "loguniform", "low": 1e-3, "high": 0.1},
}


def _space(**experiment: Any):
    return load_space_dict({"experiment": experiment, "params": PARAMS}, source="s.yaml")


def test_defaults_checkpoint_every_other_epoch_and_retry_once():
    exp = _space().experiment
    assert (exp.checkpoint_every, exp.max_failures) == (2, 1)


def test_values_from_the_file_are_parsed():
    exp = _space(checkpoint_every="3", max_failures=0).experiment
    assert (exp.checkpoint_every, exp.max_failures) == (3, 0)


def test_saved_space_round_trips_the_new_keys(tmp_path):
    space = _space(checkpoint_every=2, max_failures=4)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    again = load_space(str(path))
    assert again.experiment == space.experiment
    assert (again.experiment.checkpoint_every, again.experiment.max_failures) == (2, 4)


def test_a_space_saved_before_the_keys_existed_still_loads(tmp_path):
    # --resume reads the space.yaml an older version wrote; the keys take their defaults
    saved = _space().to_dict()
    for key in ("checkpoint_every", "max_failures"):
        del saved["experiment"][key]
    exp = load_space_dict(saved, source="old/space.yaml").experiment
    assert (exp.checkpoint_every, exp.max_failures) == (2, 1)


@pytest.mark.parametrize(
    ("experiment", "fragment"),
    [
        ({"checkpoint_every": 0}, "s.yaml: experiment.checkpoint_every must be >= 1, got 0"),
        (
            {"checkpoint_every": 1.5},
            "s.yaml: experiment.checkpoint_every=1.5 is not a whole number",
        ),
        ({"checkpoint_every": "often"}, "experiment.checkpoint_every='often' is not a number"),
        ({"max_failures": -1}, "s.yaml: experiment.max_failures must be >= 0, got -1"),
        ({"max_failures": True}, "experiment.max_failures=True is not a number"),
        (
            {"scheduler": "hyperbnd"},
            "s.yaml: experiment.scheduler='hyperbnd' is not one of asha, hyperband, median, "
            "pbt, fifo; did you mean 'hyperband'?",
        ),
        (
            {"min_samples_required": 0},
            "s.yaml: experiment.min_samples_required must be >= 1, got 0",
        ),
        (
            {"max_failure": 2},
            "unknown experiment setting 'max_failure'; did you mean 'max_failures'",
        ),
    ],
)
def test_bad_values_in_the_file_are_one_line_errors(experiment, fragment):
    with pytest.raises(UserError) as err:
        _space(**experiment)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_cli_flags_override_the_file():
    space = _space(checkpoint_every=5, max_failures=2)
    changed = apply_overrides(space, checkpoint_every=1, max_failures=0)
    assert (changed.experiment.checkpoint_every, changed.experiment.max_failures) == (1, 0)
    assert apply_overrides(space, checkpoint_every=None, max_failures=None) is space
    with pytest.raises(UserError, match=r"^--checkpoint-every must be >= 1, got 0$"):
        apply_overrides(space, checkpoint_every=0)
    with pytest.raises(UserError, match=r"^--max-failures must be >= 0, got -2$"):
        apply_overrides(space, max_failures=-2)
