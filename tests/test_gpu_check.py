"""benchmarks/gpu_check.sh, the one prepared GPU run: on a machine without CUDA it still runs
end to end, says so, and skips its GPU parts cleanly."""

from __future__ import annotations

import subprocess

import pytest
from helpers import REPO


def test_gpu_check_without_cuda_says_so_and_skips_cleanly(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run for minutes")
    out = tmp_path / "gpu"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    assert "CUDA: not available here" in summary and "torch 2." in summary
    assert not (out / "bench").exists() and not (out / "search").exists()
