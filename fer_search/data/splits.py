"""The loaded data (FERSplit, FERData), class sets, carving a val split, assembling splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_search.config import EMOTIONS, IMAGE_SIZE, SPLITS
from fer_search.errors import UserError


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so keep identity eq
class FERSplit:
    """One split: ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,) indexing ``class_names``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    soft_labels: np.ndarray | None = None  # float32 (N, C) FER+ vote distribution

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.shape != (n, IMAGE_SIZE, IMAGE_SIZE) or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images {self.images.shape} {self.images.dtype}")
        if self.labels.dtype != np.int64:
            raise ValueError(f"{self.name}: labels dtype {self.labels.dtype}, expected int64")
        if self.soft_labels is not None and self.soft_labels.shape != (n, len(self.class_names)):
            raise ValueError(f"{self.name}: soft_labels shape {self.soft_labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Class name -> number of images, every class included."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}


@dataclass
class FERData:
    """The splits (keys in train, val, test order), class names, where they came from, notes.

    ``load_args`` holds the keyword arguments of the :func:`~fer_search.data.load_data` call that
    built it (JSON-ready), so ``load_data(**data.load_args)`` loads the same data again, such as
    when a search started from this object is resumed; empty for data built by hand.
    """

    splits: dict[str, FERSplit]
    class_names: tuple[str, ...]
    source: str
    notes: list[str] = field(default_factory=list)
    load_args: dict[str, Any] = field(default_factory=dict)


def class_set_names(class_set: str) -> tuple[str, ...]:
    if class_set == "all":
        return EMOTIONS
    return tuple(name for name in EMOTIONS if name != "disgust")


def map_class_set(
    labels: np.ndarray, soft: np.ndarray | None, class_set: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (rows kept, new labels, new soft labels) for ``class_set``; disgust is class 1."""
    if class_set == "all":
        return np.ones(len(labels), bool), labels, soft
    if soft is not None:
        soft = soft.copy()
        if class_set == "merge-disgust":
            soft[:, 0] += soft[:, 1]
        soft = np.delete(soft, 1, axis=1)
        keep = soft.sum(1) > 0
        if class_set == "drop-disgust":
            keep &= labels != 1
        soft = soft[keep] / soft[keep].sum(1, keepdims=True)
        return keep, soft.argmax(1).astype(np.int64), soft.astype(np.float32)
    if class_set == "merge-disgust":
        labels = np.where(labels == 1, 0, labels)
    keep = labels != 1
    kept = labels[keep]
    return keep, (kept - (kept > 1)).astype(np.int64), None


def carve_val(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified validation subset, drawn by scikit-learn's
    ``train_test_split(stratify=...)`` seeded with ``seed``: about ``fraction`` of every class.
    Every class with 2 or more images gets at least one in val and keeps one in train; a class
    with a single image stays in train."""
    from sklearn.model_selection import train_test_split  # 1.5 s to import; only needed here

    counts = np.bincount(labels)
    rows = np.flatnonzero(counts[labels] >= 2)  # sklearn rejects one-image classes
    classes = np.flatnonzero(counts >= 2)
    val = np.zeros(len(labels), bool)
    if classes.size == 0:
        return val
    size = min(max(round(fraction * rows.size), classes.size), rows.size - classes.size)
    _, picked = train_test_split(rows, test_size=size, stratify=labels[rows], random_state=seed)
    val[picked] = True
    # sklearn shares val out by class size, so a class much smaller than 1/fraction images can
    # end up with none in val (or none left in train); move one image of such a class over
    rng = np.random.default_rng(seed)
    in_val = np.bincount(labels[val], minlength=counts.size)
    for c in classes[(in_val[classes] == 0) | (in_val[classes] == counts[classes])]:
        members = np.flatnonzero(labels == c)
        val[rng.choice(members)] = in_val[c] == 0
    return val


def assemble(
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    soft: np.ndarray | None,
    class_set: str,
    val_fraction: float,
    seed: int,
    source: str,
    notes: list[str],
    present: tuple[int, ...],
) -> FERData:
    """Apply the class set, carve val from train when the source has none, build the splits;
    a split the source had (``present``, SPLITS indices) must not end up empty."""
    keep, labels, soft = map_class_set(labels, soft, class_set)
    images, splits = images[keep], splits[keep]
    names = class_set_names(class_set)
    if class_set != "all":
        how = "disgust dropped" if class_set == "drop-disgust" else "disgust -> angry"
        notes.append(f"class set {class_set}: {len(names)} classes ({how})")
    if 1 not in present:
        present = (*present, 1)
        splits = splits.copy()
        train = np.flatnonzero(splits == 0)
        splits[train[carve_val(labels[train], val_fraction, seed)]] = 1
        notes.append(
            f"val split carved from train: {val_fraction:.0%} stratified per class, "
            f"seed {seed} ({int((splits == 1).sum()):,} images)"
        )
    out = {}
    for index, name in enumerate(SPLITS):
        rows = np.flatnonzero(splits == index)
        if rows.size == 0 and index in present:
            raise UserError(
                f"{source}: the {name} split is empty after FER+ filtering and "
                f"class set {class_set!r}"
            )
        if rows.size:
            out[name] = FERSplit(
                name,
                np.ascontiguousarray(images[rows]),
                labels[rows],
                names,
                None if soft is None else soft[rows],
            )
    return FERData(out, names, source, notes)
