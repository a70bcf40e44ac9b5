"""Synthetic demo data: cartoon faces, 48x48 uint8, the 7 FER2013 classes, deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_search.config import EMOTIONS, IMAGE_SIZE, SPLITS
from fer_search.data.checks import check_options
from fer_search.data.formats import DEMO_HINT
from fer_search.data.splits import FERData, FERSplit, class_set_names, map_class_set
from fer_search.errors import UserError


def make_demo(size: float = 1, seed: int = 0, class_set: str = "all") -> FERData:
    """Synthetic cartoon faces, 48x48 uint8, the 7 FER2013 classes, balanced and deterministic.

    ``size=1`` gives 300 train, 50 val and 50 test images per class (2,100 / 350 / 350); the
    counts scale linearly with ``size`` (a fraction such as 0.1 is fine for quick tests). Each
    split is drawn from its own generator seeded with ``(seed, split index)``. ``load_args``
    is set so that ``load_data(**data.load_args)`` makes the same data.
    """
    check_options(class_set, "majority", 0.1, seed)
    if not size > 0:
        raise UserError(f"demo size must be > 0, got {size!r}")
    per_class = {"train": 300, "val": 50, "test": 50}
    names, splits = class_set_names(class_set), {}
    for index, split in enumerate(SPLITS):
        n = max(1, round(per_class[split] * size))
        rng = np.random.default_rng([seed, index])
        labels = rng.permutation(np.repeat(np.arange(len(EMOTIONS), dtype=np.int64), n))
        images = _render_faces(labels, rng)
        keep, labels, _ = map_class_set(labels, None, class_set)
        splits[split] = FERSplit(split, images[keep], labels, names)
    note = (
        f"synthetic demo data (size={size}, seed={seed}): cartoon faces, not FER2013; "
        f"for real results pass {DEMO_HINT}"
    )
    args = {"path": "demo", "class_set": class_set, "seed": int(seed), "demo_size": size}
    return FERData(splits, names, "demo", [note], args)


def demo_data(path: Any, ferplus: Any, size: float, seed: int, class_set: str) -> FERData:
    if ferplus is not None:
        raise UserError(f"FER+ labels ({ferplus}) need the real fer2013.csv; pass {DEMO_HINT}")
    data = make_demo(size, seed, class_set)
    if path is None:
        data.notes.insert(
            0,
            f"no --data given and {Path.cwd() / 'data'} holds no FER2013, so "
            f"using the synthetic demo data; point at real data with {DEMO_HINT}",
        )
    return data


# Expression parameters per class, in EMOTIONS order. Units are pixels of an unscaled face
# (semi-axes about 14 x 18): brow raise, brow slant (+ = inner ends up), eye half-height,
# mouth curve (+ = smile), mouth opening, mouth half-width, lip asymmetry/wave.
_EXPRESSION = np.array([
    [-1.6, -0.45, 1.1, -0.6, 0.3, 6.0, 0.0],   # angry
    [-1.0, -0.30, 1.0, -1.4, 0.9, 6.0, 1.3],   # disgust
    [1.8, 0.35, 2.5, -0.6, 2.0, 7.0, 0.3],     # fear
    [0.2, 0.00, 1.3, 3.0, 1.0, 8.5, 0.0],      # happy
    [0.3, 0.50, 1.3, -2.2, 0.2, 6.5, 0.0],     # sad
    [2.5, 0.10, 2.8, 0.0, 4.0, 4.5, 0.0],      # surprise
    [0.0, 0.00, 1.7, 0.0, 0.2, 7.0, 0.0],      # neutral
], dtype=np.float32)  # fmt: skip
_EXPRESSION_STD = np.array([0.7, 0.18, 0.4, 0.8, 0.6, 0.9, 0.4], dtype=np.float32)


def _soft_mask(distance: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(distance + 0.5, 0.0, 1.0)


def _render_faces(labels: np.ndarray, rng: np.random.Generator, chunk: int = 1024) -> np.ndarray:
    out = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for start in range(0, len(labels), chunk):
        out[start : start + chunk] = _render_chunk(labels[start : start + chunk], rng)
    return out


def _expression(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image expression parameters: neutral + strength * (class - neutral) + noise."""
    n = len(labels)
    strength = rng.uniform(0.5, 1.25, (n, 1)).astype(np.float32)
    neutral = _EXPRESSION[6]
    params = neutral + strength * (_EXPRESSION[labels] - neutral)
    params += rng.standard_normal((n, 7), dtype=np.float32) * _EXPRESSION_STD
    params[:, 2] = np.maximum(params[:, 2], 0.35)
    params[:, 5] = np.clip(params[:, 5], 3.0, 10.0)
    params[:, 4] = np.maximum(params[:, 4], 0.0)
    return params


def _render_chunk(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)

    def col(values: np.ndarray) -> np.ndarray:  # (n,) -> (n, 1, 1) for broadcasting
        return values.astype(np.float32).reshape(n, 1, 1)

    p = [col(v) for v in _expression(labels, rng).T]
    brow_raise, brow_slant, eye_open, curve, opening, width, wave = p
    scale = col(rng.uniform(0.85, 1.15, n))
    angle = col(np.deg2rad(rng.uniform(-10, 10, n)))
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2
    y, x = grid[None, :, None], grid[None, None, :]
    dx, dy = col(rng.uniform(-3.5, 3.5, n)), col(rng.uniform(-3, 3.5, n))
    u = ((x - dx) * np.cos(angle) + (y - dy) * np.sin(angle)) / scale
    v = (-(x - dx) * np.sin(angle) + (y - dy) * np.cos(angle)) / scale
    fa, fb = col(rng.uniform(12.5, 15.5, n)), col(rng.uniform(16.5, 19.5, n))
    face = _soft_mask((1 - np.sqrt((u / fa) ** 2 + (v / fb) ** 2)) * fa * scale)
    eye_x, eye_y = col(rng.uniform(5.0, 6.2, n)), col(rng.uniform(-4.5, -2.5, n))
    features = np.zeros_like(u)
    for side in (-1.0, 1.0):
        eu, ev = u - side * eye_x, v - eye_y
        eye = (1 - np.sqrt((eu / 3.0) ** 2 + (ev / eye_open) ** 2)) * np.minimum(eye_open, 3.0)
        outward = side * u - eye_x
        brow_y = eye_y - 4.0 - brow_raise + brow_slant * outward
        brow = np.minimum(1.1 - np.abs(v - brow_y), 3.6 - np.abs(outward))
        features = np.maximum(features, _soft_mask(np.maximum(eye, brow) * scale))
    features = np.maximum(features, _mouth(u, v, curve, opening, width, wave, scale, rng))
    return _shade(face, features, x, y, rng)


def _mouth(
    u: np.ndarray,
    v: np.ndarray,
    curve: np.ndarray,
    opening: np.ndarray,
    width: np.ndarray,
    wave: np.ndarray,
    scale: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """A curved band (smile/frown/flat), thickened by ``opening`` ('O' when narrow)."""
    n = len(u)
    t = u / width
    side = rng.choice(np.array([-1.0, 1.0], np.float32), (n, 1, 1))
    mouth_y = rng.uniform(8.0, 10.0, (n, 1, 1)).astype(np.float32)
    centre = mouth_y + curve * (0.35 - t**2) + wave * side * (0.6 * t + 0.4 * np.sin(3 * np.pi * t))
    half = 0.8 + 0.5 * opening * np.sqrt(np.clip(1 - t**2, 0, 1))
    inside = np.minimum(half - np.abs(v - centre), (1 - np.abs(t)) * width)
    return _soft_mask(inside * scale)


def _shade(
    face: np.ndarray,
    features: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Tones, lighting gradient, contrast and Gaussian noise -> uint8."""
    n = len(face)

    def col(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)

    background = col(15, 140) + col(-25, 25) * y / 24
    img = background * (1 - face) + col(115, 210) * face
    img *= 1 - col(0.45, 0.8) * features * face
    img *= 1 + col(-0.35, 0.35) * x / 24 + col(-0.25, 0.25) * y / 24
    mean = img.mean(axis=(1, 2), keepdims=True)
    img = (img - mean) * col(0.6, 1.2) + mean
    img += rng.standard_normal(img.shape, dtype=np.float32) * col(2, 10)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
