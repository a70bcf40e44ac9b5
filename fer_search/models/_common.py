"""What the architectures share: the input-size wrapper, the grey first conv, ImageNet weights."""

from __future__ import annotations

import os
import pickle
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from fer_search.errors import UserError


class FerNet(nn.Module):
    """Checks the input is (B, 1, H, W) and resizes it to ``input_size`` before the network.

    Resizing inside the model (on its device) keeps training, evaluation and prediction agreed
    on one input size; at the native 48 px it is a no-op.
    """

    fer_args: dict[str, Any]  # set by create_model: create_model(**fer_args) rebuilds it

    def __init__(self, body: nn.Module, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.body = body
        self.fer_args = {}

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) image batch, got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            size = (self.input_size, self.input_size)
            shrink = self.input_size < min(x.shape[-2:])
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return self.body(x)


def grey_conv(conv: nn.Conv2d, *, stride: int, keep_weights: bool) -> nn.Conv2d:
    """A 1-channel copy of an RGB first conv with a new stride and the same kernel and padding.

    With ``keep_weights`` (ImageNet) the kernel is the RGB kernel summed over its input channels,
    so a grey image x gives what the RGB net gave for the image (x, x, x). Otherwise it is freshly
    initialised (Kaiming, fan-out, as torchvision does for these nets). Kernel sizes are never
    changed, so the summed weights always fit.
    """
    new = nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=stride,
        padding=conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        if keep_weights:
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
        else:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            if new.bias is not None:
                nn.init.zeros_(new.bias)
    return new


def weights_file(weights: WeightsEnum, weights_path: str) -> Path:
    """Where the ImageNet weights are read from: ``weights_path``, else the torch hub cache."""
    if weights_path:
        return Path(weights_path).expanduser()
    name = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_imagenet(
    model: nn.Module,
    weights: WeightsEnum,
    weights_path: str,
    *,
    arch: str,
    fix_keys: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Load torchvision's ImageNet ``weights`` into the unmodified ``model``, from a local file."""
    path = weights_file(weights, weights_path)
    if not path.is_file():
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise UserError(
            f"pretrained {arch}: weights file {path} not found; download {weights.url} and pass "
            f"--weights-path FILE, or put it in the torch hub cache {hub}/ (nothing is downloaded)"
        )
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
        reason = " ".join(str(e).split())[:200]
        raise UserError(f"pretrained {arch}: cannot read weights file {path}: {reason}") from None
    if not isinstance(state, dict):
        raise UserError(
            f"pretrained {arch}: {path} holds a {type(state).__name__}, not a state dict"
        )
    if fix_keys is not None:
        state = fix_keys(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        reason = " ".join(str(e).split())[:300]
        raise UserError(
            f"pretrained {arch}: {path} does not fit {arch} (expected {weights.url}): {reason}"
        ) from None
