"""What the test modules share: run `python -m fer_search` as a user does, and read its error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> Any:
    """benchmarks/<name>.py as a module (the scripts are not a package), to test its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_python(
    *argv: str,
    env: Mapping[str, str] | None = None,
    drop_env: Iterable[str] = (),
    cwd: Path | str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python ARGV` with this checkout importable (PYTHONPATH is the repository), in a new
    process. `env` adds variables; `drop_env` removes those whose names start with a prefix."""
    prefixes = tuple(drop_env)
    environ = {k: v for k, v in os.environ.items() if not (prefixes and k.startswith(prefixes))}
    environ.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_fer_search(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """`python -m fer_search ARGS` from this checkout, as a user runs it (run_python's options)."""
    return run_python("-m", "fer_search", *args, **options)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2, no traceback and one `fer-search: error` line on stderr; that line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fer-search: error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


TINY_PARAMS = """\
params:
  model: simple_cnn
  width: 8
  batch_size: 64
  optimizer: {type: categorical, choices: [sgd, adamw]}
  lr@sgd: {type: loguniform, low: 0.003, high: 0.3, when: {optimizer: sgd}}
  lr@adamw: {type: loguniform, low: 1e-4, high: 1e-2, when: {optimizer: adamw}}
  dropout: {type: uniform, low: 0.0, high: 0.4}
  hflip: 0.5
"""


def tiny_space(name: str, *, trials: int, epochs: int = 3, params: str = "", **experiment) -> str:
    """A search space YAML whose trials take seconds on the demo data: simple_cnn at width 8
    over optimiser, learning rate and dropout, one CPU per trial, ASHA halving from epoch 1.
    `experiment` adds or overrides settings; `params` adds lines under `params:`."""
    settings = {"epochs": epochs, "grace_period": 1, "reduction_factor": 2,
                "num_samples": trials, "seed": 0, "cpus_per_trial": 1, "top_k": 2,
                **experiment}  # fmt: skip
    lines = [f"name: {name}", "experiment:", *(f"  {k}: {v}" for k, v in settings.items())]
    return "\n".join(lines) + "\n" + TINY_PARAMS + params


def random_splits(n_train: int = 48, n_val: int = 16, seed: int = 0):
    """Train and val FERSplits of random 48x48 faces, labels cycling through the seven
    emotions: the engine tests' tiny data."""
    import numpy as np

    from fer_search.config import EMOTIONS
    from fer_search.data import FERSplit

    rng = np.random.default_rng(seed)

    def split(name: str, n: int) -> FERSplit:
        images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        return FERSplit(name, images, np.arange(n, dtype=np.int64) % len(EMOTIONS), EMOTIONS)

    return split("train", n_train), split("val", n_val)


class AutocastRecorder:
    """Builds the engine's model (monkeypatched over engine.prepare.create_model) with a forward
    hook recording, per training forward pass: autocast on for `device_type`?, at which dtype,
    and the logits' dtype."""

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.calls: list[tuple[bool, Any, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from fer_search.models import create_model

        model = create_model(*args, **kwargs)
        model.register_forward_hook(self.hook)
        return model

    def hook(self, module: Any, inputs: Any, output: Any) -> None:
        import torch

        if module.training:
            enabled = torch.is_autocast_enabled(self.device_type)
            self.calls.append((enabled, torch.get_autocast_dtype(self.device_type), output.dtype))
