"""Train and evaluate one model in plain PyTorch. Knows nothing of Ray.

- `loop`: `train`, the epoch loop on device-resident data
- `prepare`: seeds, the model, the data on the device, the run's state
- `precision`: bf16 / fp16 / fp32 per device and the GradScaler
- `devices`: device choice, host-to-device copies, out-of-memory failures
- `optim`: optimiser, learning-rate schedule, plateau scaler, EMA
- `inference`: images to probabilities (with test-time augmentation), epoch metrics
- `checkpoint`: resumable and best-weights payloads, safe save and load
- `state`: the run's data, state and result
- `_torch_compat`: the torch internals the above rely on, checked on one torch version
"""

from __future__ import annotations

from fer_search.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    best_payload,
    best_state_dict,
    checkpoint_file,
    load_checkpoint,
    model_from_checkpoint,
    model_payload,
    save_checkpoint,
)
from fer_search.engine.cost import measure_cost, model_cost
from fer_search.engine.devices import configure_backends, resolve_device, to_device
from fer_search.engine.inference import (
    as_tensor,
    compact_probs,
    epoch_metrics,
    predict_probs,
    to_input,
)
from fer_search.engine.loop import train
from fer_search.engine.optim import Plateau, ema_decay, lr_factor, make_optimizer
from fer_search.engine.precision import (
    amp_dtype,
    cpu_has_bf16,
    cuda_has_bf16,
    make_grad_scaler,
    precision_name,
    use_channels_last,
)
from fer_search.engine.prepare import build_model, mirror_balance, seed_everything
from fer_search.engine.state import EpochCallback, TrainResult

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "EpochCallback",
    "Plateau",
    "TrainResult",
    "amp_dtype",
    "as_tensor",
    "best_payload",
    "best_state_dict",
    "build_model",
    "checkpoint_file",
    "compact_probs",
    "configure_backends",
    "cpu_has_bf16",
    "cuda_has_bf16",
    "ema_decay",
    "epoch_metrics",
    "load_checkpoint",
    "lr_factor",
    "make_grad_scaler",
    "make_optimizer",
    "measure_cost",
    "mirror_balance",
    "model_cost",
    "model_from_checkpoint",
    "model_payload",
    "precision_name",
    "predict_probs",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "to_device",
    "to_input",
    "train",
    "use_channels_last",
]
