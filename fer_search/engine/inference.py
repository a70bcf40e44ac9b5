"""From uint8 images to class probabilities, and the epoch's validation metrics."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_search import augment
from fer_search.engine.devices import to_device
from fer_search.errors import UserError

__all__ = ["as_tensor", "compact_probs", "epoch_metrics", "predict_probs", "to_input"]

TTA = ("none", "flip", "crops", "tencrop")
# ten-crop: the four corner crops and the centre crop of the image padded by 2 pixels (each a
# 2-pixel shift, the 48-pixel analogue of FER papers' 44-of-48 crops), each also mirrored


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy view of a (possibly read-only, shared-memory) numpy array; we never write to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(array)


def to_input(images_u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 images -> the network's normalised float input, NHWC when asked."""
    x = augment.normalize(images_u8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The batch and its test-time-augmented copies."""
    views = [x]
    if tta in ("flip", "crops", "tencrop"):
        views.append(torch.flip(x, dims=[3]))
    if tta in ("crops", "tencrop"):
        padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
        h, w = x.shape[-2:]
        for dy, dx in ((0, 0), (0, 4), (4, 0), (4, 4)):
            views.append(padded[..., dy : dy + h, dx : dx + w])
    if tta == "tencrop":  # the centre crop is the image itself; mirror the four corners too
        views += [torch.flip(v, dims=[3]) for v in views[2:6]]
    return views


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    tta: str = "none",
) -> np.ndarray:
    """Softmax probabilities (N, C) for uint8 images (N, 48, 48).

    Images already on `device` are used where they are (the engine moves the val split there
    once per trial); others are copied there once per call. tta: "none"; "flip" averages with
    the mirrored image; "crops" adds four 2-pixel shifts; "tencrop" adds those four
    mirrored too (ten views).
    """
    if tta not in TTA:
        raise UserError(f"unknown tta {tta!r}; use none, flip, crops or tencrop")
    device = torch.device(device)
    model.eval()
    data = images if isinstance(images, torch.Tensor) else as_tensor(images)
    data = to_device(data, device)
    out = []
    for start in range(0, len(data), batch_size):
        x = augment.normalize(data[start : start + batch_size])
        views = _views(x, tta)
        probs = torch.stack([torch.softmax(model(v).float(), dim=1) for v in views]).mean(0)
        out.append(probs)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).cpu().numpy()  # one device-to-host copy (and sync) per call


def compact_probs(probs: np.ndarray) -> torch.Tensor:
    """Probabilities as float16 (a checkpoint keeps the best epoch's on val), each image's
    predicted class kept: where rounding ties the top class with a lower-numbered one, the
    top class is raised one float16 step, so argmax (and accuracy) read the same."""
    half = probs.astype(np.float16)
    pred = probs.argmax(1)
    rows = np.flatnonzero(half.argmax(1) != pred)
    half[rows, pred[rows]] = np.nextafter(half[rows, pred[rows]], np.float16(np.inf))
    return torch.from_numpy(half)


def epoch_metrics(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(loss, accuracy, macro F1) of predicted probabilities against integer labels."""
    from sklearn.metrics import f1_score

    pred = probs.argmax(1)
    eps = 1e-7
    loss = float(-np.log(probs[np.arange(len(labels)), labels] + eps).mean())
    acc = float((pred == labels).mean())
    f1 = float(f1_score(labels, pred, average="macro", zero_division=0))
    return loss, acc, f1
