"""Build a model by name, timm style: ``@register_model`` adds a builder, ``create_model`` calls it.

A builder is a function named after the model that declares only the arguments it uses;
``create_model`` checks the common ones and passes each builder the arguments its signature
names (``width``, ``depth``, ``convs``, ``blocks``, ``pool_before_norm`` and ``batch_norm`` only
mean something to ``simple_cnn``; ``pretrained`` is rejected by models that have no ImageNet
weights).
``create_model`` stores the arguments on the returned module as ``model.fer_args`` so a
checkpoint rebuilds the same network with ``create_model(**fer_args)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from fer_search.errors import UserError, did_you_mean
from fer_search.models._common import FerNet

__all__ = ["create_model", "list_models", "register_model"]

MIN_INPUT_SIZE = 32  # four stride-2 stages still leave a 2x2 map

_Builder = TypeVar("_Builder", bound=Callable[..., FerNet])
_MODELS: dict[str, Callable[..., FerNet]] = {}


def register_model(builder: _Builder) -> _Builder:
    """Register ``builder`` under its function name."""
    name = builder.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = builder
    return builder


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_MODELS)


def create_model(
    name: str,
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    batch_norm: bool = True,
    width: int = 32,
    depth: int = 3,
    convs: int = 2,
    blocks: str = "",
    pool_before_norm: bool = False,
    input_size: int = 48,
    pretrained: bool = False,
    weights_path: str = "",
) -> FerNet:
    """Build model ``name`` for (B, 1, 48, 48) normalised input; it returns logits (B, num_classes).

    ``pretrained`` loads ImageNet weights from ``weights_path`` or the torch hub cache (never
    downloads). ``model.fer_args`` records the arguments with ``pretrained=False``: a rebuilt model
    gets its weights from the checkpoint, not from the ImageNet file.
    """
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}{did_you_mean(name, _MODELS)}")
    if num_classes < 2:
        raise UserError(f"model {name}: num_classes must be >= 2, got {num_classes=}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"model {name}: dropout must be in [0, 1), got {dropout=}")
    if width < 1:
        raise UserError(f"model {name}: width must be >= 1, got {width=}")
    if input_size < MIN_INPUT_SIZE:
        raise UserError(f"model {name}: input_size must be >= {MIN_INPUT_SIZE}, got {input_size=}")
    args: dict[str, Any] = {
        "num_classes": num_classes,
        "dropout": dropout,
        "batch_norm": batch_norm,
        "width": width,
        "depth": depth,
        "convs": convs,
        "blocks": blocks,
        "pool_before_norm": pool_before_norm,
        "input_size": input_size,
    }
    builder = _MODELS[name]
    given = {**args, "pretrained": pretrained, "weights_path": weights_path}
    wanted = inspect.signature(builder).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in wanted.values())
    model = builder(**{key: value for key, value in given.items() if takes_all or key in wanted})
    model.fer_args = {"name": name, **args, "pretrained": False, "weights_path": ""}
    return model
