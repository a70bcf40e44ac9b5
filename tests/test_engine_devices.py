"""Device hygiene: the val split moves to the device once per trial, device-resident images are
used where they are, cuDNN autotuning on CUDA, out of memory as a deterministic failure, and
an engine that runs without Ray."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import random_splits

from fer_search import engine
from fer_search.config import EMOTIONS, TrainConfig
from fer_search.errors import DeterministicError
from fer_search.models import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(**overrides) -> TrainConfig:
    values = dict(model="simple_cnn", width=4, depth=2, convs=1, device="cpu", amp="off")
    values.update(epochs=3, batch_size=16, eval_batch_size=64, schedule="constant", lr=0.01)
    values.update(overrides)
    return TrainConfig(**values)


def test_val_split_is_copied_to_the_device_once_per_trial(monkeypatch):
    """On CPU the copy is simulated: every `to_device` returns a fresh tensor, as a host-to-GPU
    copy would, and the host memory of the val images is watched."""
    train_split, val_split = random_splits()
    host = val_split.images.ctypes.data
    copies_of_val: list[torch.Tensor] = []
    validated: list[torch.Tensor] = []

    def copying_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        copy = tensor.clone()
        if tensor.data_ptr() == host:
            copies_of_val.append(copy)
        return copy

    def spy_predict(model, images, **kwargs):
        validated.append(images)
        return predict(model, images, **kwargs)

    predict = engine.loop.predict_probs
    for module in (engine.loop, engine.prepare, engine.inference):
        monkeypatch.setattr(module, "to_device", copying_to_device)
    monkeypatch.setattr(engine.loop, "predict_probs", spy_predict)
    result = engine.train(config(), train_split, val_split)

    assert result.status == "completed" and result.epochs_run == 3
    assert len(copies_of_val) == 1  # not once per epoch
    assert len(validated) == 3 and all(images is copies_of_val[0] for images in validated)


def test_predict_probs_uses_a_device_tensor_as_it_is(monkeypatch):
    torch.manual_seed(0)
    net = create_model("simple_cnn", len(EMOTIONS), width=4, depth=2, convs=1).eval()
    images = torch.randint(0, 256, (10, 48, 48), dtype=torch.uint8)
    moved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        out = engine.devices.to_device(tensor, device)
        moved.append((tensor, out))
        return out

    monkeypatch.setattr(engine.inference, "to_device", spy)
    probs = engine.predict_probs(net, images, device="cpu", batch_size=4)
    assert probs.shape == (10, len(EMOTIONS))
    assert [(src is images, out is images) for src, out in moved] == [(True, True)]


def test_to_device_keeps_a_tensor_that_is_already_there():
    tensor = torch.arange(6, dtype=torch.uint8)
    assert engine.to_device(tensor, torch.device("cpu")) is tensor


def test_cudnn_autotuning_is_on_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    engine.configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    engine.configure_backends(torch.device("cuda"))  # a flag: needs no GPU to set
    assert torch.backends.cudnn.benchmark is True


def running_out_of_memory(when_training: bool):
    """A create_model whose network raises torch.OutOfMemoryError in training (or in eval)."""

    def build(*args, **kwargs):
        model = create_model(*args, **kwargs)

        def hook(module, inputs):
            if module.training == when_training:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_pre_hook(hook)
        return model

    return build


@pytest.mark.parametrize(
    ("when_training", "knob"), [(True, "batch_size=16"), (False, "eval_batch_size=64")]
)
def test_out_of_memory_is_a_deterministic_failure(monkeypatch, when_training, knob):
    monkeypatch.setattr(engine.prepare, "create_model", running_out_of_memory(when_training))
    with pytest.raises(DeterministicError) as error:
        engine.train(config(), *random_splits())
    name = knob.split("=")[0]
    assert str(error.value) == f"out of memory at {knob} on cpu; lower {name}"


def test_cuda_out_of_memory_names_the_memory_in_use(monkeypatch):
    mib = 2**20
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 7812 * mib + 5)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 8020 * mib)
    props = SimpleNamespace(total_memory=15360 * mib)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)

    error = engine.devices.out_of_memory(torch.device("cuda"), "batch_size", 256)
    assert isinstance(error, DeterministicError)
    assert str(error) == (
        "CUDA out of memory at batch_size=256 on cuda:0 (7,812 MiB allocated, 8,020 MiB "
        "reserved of 15,360 MiB); lower batch_size"
    )


def test_a_nan_loss_still_ends_with_status_nan():
    result = engine.train(config(epochs=2, lr=1e6), *random_splits())
    assert result.status == "nan" and "non-finite" in result.message


def test_the_engine_trains_without_importing_ray():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from fer_search import engine\n"
        "from fer_search.config import EMOTIONS, TrainConfig\n"
        "from fer_search.data import FERSplit\n"
        "x = np.zeros((8, 48, 48), np.uint8); y = np.arange(8, dtype=np.int64) % 7\n"
        "s = FERSplit('train', x, y, EMOTIONS)\n"
        "cfg = TrainConfig(epochs=1, width=4, depth=2, convs=1, batch_size=4, device='cpu')\n"
        "assert engine.train(cfg, s, s).status == 'completed'\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
