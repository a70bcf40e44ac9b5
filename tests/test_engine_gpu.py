"""The engine on a CUDA GPU: fp16 with a GradScaler, bf16, the auto choice, channels_last,
torch.compile, device-resident data and out of memory. Skipped without CUDA (marker `gpu`)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from helpers import AutocastRecorder, random_splits

from fer_search import engine
from fer_search.config import TrainConfig
from fer_search.engine import _torch_compat
from fer_search.errors import DeterministicError
from fer_search.models import create_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def config(**overrides) -> TrainConfig:
    values = dict(model="simple_cnn", width=8, device="cuda", epochs=1, batch_size=32)
    values.update(eval_batch_size=64, schedule="constant", lr=0.01)
    values.update(overrides)
    return TrainConfig(**values)


def trained(monkeypatch, tmp_path, cfg: TrainConfig):
    """Train with an AutocastRecorder; returns (result, recorder, last checkpoint payload)."""
    recorder = AutocastRecorder("cuda")
    monkeypatch.setattr(engine.prepare, "create_model", recorder)
    path = tmp_path / "last.pt"
    result = engine.train(cfg, *random_splits(96, 32), on_epoch=lambda stats, save: save(path))
    assert result.status == "completed", result.message
    assert all(math.isfinite(h.train_loss) and math.isfinite(h.val_loss) for h in result.history)
    return result, recorder, torch.load(path, weights_only=True)


def test_fp16_on_cuda_uses_autocast_and_a_grad_scaler(monkeypatch, tmp_path):
    result, recorder, payload = trained(monkeypatch, tmp_path, config(amp="fp16", epochs=2))
    assert result.precision == "fp16" and {h.precision for h in result.history} == {"fp16"}
    steps = 2 * (96 // 32)
    assert recorder.calls == [(True, torch.float16, torch.float16)] * steps
    scaler = payload["scaler"]
    assert scaler and 0 < scaler["scale"] <= 65536.0
    assert scaler["_growth_tracker"] == steps or scaler["scale"] < 65536.0
    # fused: the GradScaler's inf check stays on the GPU instead of a host read per step
    assert all(group["fused"] for group in payload["optimizer"]["param_groups"])


def test_bf16_on_cuda_needs_no_grad_scaler(monkeypatch, tmp_path):
    result, recorder, payload = trained(monkeypatch, tmp_path, config(amp="bf16"))
    assert result.precision == "bf16"
    assert set(recorder.calls) == {(True, torch.bfloat16, torch.bfloat16)}
    assert payload["scaler"] == {}  # disabled


def test_auto_picks_bf16_on_gpus_that_run_it_natively(monkeypatch, tmp_path):
    result, _, payload = trained(monkeypatch, tmp_path, config(amp="auto"))
    native = _torch_compat.cuda_has_native_bf16()
    assert result.precision == ("bf16" if native else "fp16")
    assert bool(payload["scaler"]) is not native


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_on_cuda(channels_last):
    result = engine.train(config(channels_last=channels_last), *random_splits(96, 32))
    assert result.status == "completed", result.message
    # a conv with several input channels: with one, NCHW and NHWC strides are the same layout
    convs = [m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = next(m for m in convs if m.in_channels > 1)
    assert conv.weight.is_cuda
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv.weight.is_contiguous() is not channels_last


def test_torch_compile_trains_on_cuda():
    result = engine.train(config(compile=True, epochs=2), *random_splits(96, 32))
    assert result.status == "completed", result.message
    assert all(math.isfinite(h.train_loss) for h in result.history)


def test_data_lives_on_the_device(monkeypatch):
    seen: dict[str, list[torch.device]] = {"train": [], "val": []}
    prepare, predict = engine.loop.prepare_data, engine.loop.predict_probs

    def spy_prepare(cfg, split, device):
        data = prepare(cfg, split, device)
        seen["train"] += [data.images.device, data.targets.device, data.index.device]
        return data

    def spy_predict(model, images, **kwargs):
        seen["val"].append(images.device)
        return predict(model, images, **kwargs)

    monkeypatch.setattr(engine.loop, "prepare_data", spy_prepare)
    monkeypatch.setattr(engine.loop, "predict_probs", spy_predict)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    result = engine.train(config(epochs=2), *random_splits(96, 32))
    assert result.status == "completed"
    assert {d.type for d in seen["train"] + seen["val"]} == {"cuda"} and len(seen["val"]) == 2
    assert torch.backends.cudnn.benchmark is True


def test_to_device_copies_from_host_and_keeps_device_tensors():
    host = torch.arange(256, dtype=torch.uint8)
    on_gpu = engine.to_device(host, torch.device("cuda"))
    torch.cuda.synchronize()
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), host)
    assert engine.to_device(on_gpu, torch.device("cuda")) is on_gpu


def test_out_of_memory_on_cuda_names_the_memory_in_use(monkeypatch):
    def build(*args, **kwargs):
        model = create_model(*args, **kwargs)

        def hook(module, inputs):
            if module.training:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(engine.prepare, "create_model", build)
    with pytest.raises(DeterministicError) as error:
        engine.train(config(), *random_splits(96, 32))
    pattern = (
        r"CUDA out of memory at batch_size=32 on cuda:\d+ \([\d,]+ MiB allocated, "
        r"[\d,]+ MiB reserved of [\d,]+ MiB\); lower batch_size"
    )
    assert re.fullmatch(pattern, str(error.value)), str(error.value)
