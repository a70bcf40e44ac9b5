"""Precision per device: the amp choice table, and fp16 + GradScaler trained for real on CPU
through the same code path that a GPU without native bf16 takes."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import AutocastRecorder, random_splits

from fer_search import engine
from fer_search.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
INITIAL_SCALE = 65536.0  # torch.amp.GradScaler's default init_scale


def fp16_config(**overrides) -> TrainConfig:
    values = dict(amp="fp16", device="cpu", model="simple_cnn", width=4, depth=2, convs=1)
    values.update(epochs=1, batch_size=16, eval_batch_size=64, schedule="constant", lr=0.01)
    values.update(overrides)
    return TrainConfig(**values)


def test_fp16_on_cpu_trains_in_fp16_with_a_grad_scaler(monkeypatch, tmp_path):
    recorder = AutocastRecorder("cpu")
    monkeypatch.setattr(engine.prepare, "create_model", recorder)
    path = tmp_path / "last.pt"
    cfg = fp16_config(epochs=2)
    result = engine.train(cfg, *random_splits(), on_epoch=lambda stats, save: save(path))

    assert result.status == "completed", result.message
    assert result.precision == "fp16"
    assert [h.precision for h in result.history] == ["fp16", "fp16"]
    assert all(math.isfinite(h.train_loss) and math.isfinite(h.val_loss) for h in result.history)
    steps = 2 * (48 // 16)
    # every training step ran under fp16 autocast: no silent fallback to fp32
    assert recorder.calls == [(True, torch.float16, torch.float16)] * steps
    # the GradScaler was enabled and updated after every step: either all steps were finite
    # (the growth tracker counts them) or an overflow halved the scale and restarted the count
    scaler = torch.load(path, weights_only=True)["scaler"]
    assert scaler, "the GradScaler was disabled (its state is empty)"
    assert 0 < scaler["scale"] <= INITIAL_SCALE
    assert scaler["_growth_tracker"] == steps or scaler["scale"] < INITIAL_SCALE


def test_fp16_resume_on_cpu_continues_exactly(tmp_path):
    cfg = fp16_config(epochs=2)
    path = tmp_path / "epoch1.pt"

    def save_first(stats, save):
        if stats.epoch == 1:
            save(path)

    first = engine.train(cfg, *random_splits(), on_epoch=save_first)
    resumed = engine.train(cfg, *random_splits(), resume=engine.load_checkpoint(path))
    learned = [(h.train_loss, h.val_loss, h.val_acc, h.lr) for h in first.history]
    assert [(h.train_loss, h.val_loss, h.val_acc, h.lr) for h in resumed.history] == learned
    assert resumed.precision == "fp16"


class ScalerSpy:
    """Stands in for torch.amp.GradScaler to see what the engine asks for."""

    def __init__(self, device: str, enabled: bool = True) -> None:
        self.device, self.enabled = device, enabled


# (amp, device, native bf16 on that device) -> (precision, GradScaler(device type) enabled?)
CHOICES = [
    ("auto", "cuda", True, "bf16", False),
    ("auto", "cuda", False, "fp16", True),  # T4 / V100: fp16 with loss scaling
    ("auto", "cpu", True, "bf16", False),
    ("auto", "cpu", False, "fp32", False),  # emulated bf16 would be slower than fp32
    ("bf16", "cuda", False, "bf16", False),
    ("bf16", "cpu", False, "bf16", False),
    ("fp16", "cuda", True, "fp16", True),
    ("fp16", "cpu", True, "fp16", True),  # asked for: the same path as on a GPU
    ("off", "cuda", True, "fp32", False),
    ("off", "cpu", True, "fp32", False),
]


@pytest.mark.parametrize(("amp", "device", "native", "precision", "scaled"), CHOICES)
def test_precision_choice_per_device(monkeypatch, amp, device, native, precision, scaled):
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        assert not including_emulation, "auto must ask for native bf16 only"
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(engine.precision, "cpu_has_bf16", lambda: native)
    monkeypatch.setattr(engine.precision, "GradScaler", ScalerSpy)
    cfg, device = TrainConfig(amp=amp), torch.device(device)

    assert engine.precision_name(cfg, device) == precision
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
    assert engine.amp_dtype(cfg, device) == dtypes[precision]
    scaler = engine.make_grad_scaler(cfg, device)
    assert (scaler.device, scaler.enabled) == (device.type, scaled)


def test_cuda_bf16_check_works_with_the_older_signature(monkeypatch):
    # torch before `including_emulation` answered for native support without an argument
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert engine.precision_name(TrainConfig(), CUDA) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert engine.precision_name(TrainConfig(), CUDA) == "bf16"


def test_a_real_cpu_grad_scaler_is_enabled_only_for_fp16():
    assert engine.make_grad_scaler(TrainConfig(amp="fp16"), CPU).is_enabled()
    for amp in ("bf16", "off"):
        assert not engine.make_grad_scaler(TrainConfig(amp=amp), CPU).is_enabled()
