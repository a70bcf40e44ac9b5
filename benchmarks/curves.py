"""Recorded learning curves from real training: the table a surrogate benchmark is fitted on.

    python benchmarks/curves.py --data fer2013.csv.gz \
        --out results/benchmarks/curves/curves.csv \
        [--configs 64] [--epochs 12] [--train-size 6000] [--repeats 8] [--repeat-seeds 1] \
        [--budget-min 40]

A space-filling design (a scrambled Sobol sequence, seeded) over a space wider than
reference.yaml (`fer_search.tuning.curve_space`): the simple_cnn family's width and blocks,
optimiser, learning rate, weight decay, schedule, dropout, label smoothing, batch size and the
augmentation strengths. Each configuration trains from scratch on a fixed, stratified part of
FER2013's Training split (`--train-size` images, the same for every configuration) for
`--epochs` epochs, and every epoch's val_acc (PublicTest, all 3,589 images), losses and
seconds are appended to `--out`, one row per epoch. The first `--repeats` configurations train
again with seeds 1 to `--repeat-seeds`: the noise of a curve. The collection is resumable in
chunks: a (configuration, seed) already in the table is skipped, and no new one starts after
`--budget-min` minutes (each call trains one at least). Numbers only: no image is written.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_search.tuning.curve_space import design  # noqa: E402

COLUMNS = ("config", "seed", "epoch", "val_acc", "val_loss", "train_loss", "train_acc", "epoch_s")


def stratified(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` indices with each class in its share of `labels`, sorted (the same every run)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        share = max(1, round(size * len(rows) / len(labels)))
        chosen.append(rng.choice(rows, min(share, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def done_runs(out: Path) -> set[tuple[int, int]]:
    if not out.is_file():
        return set()
    with out.open() as file:
        return {(int(r["config"]), int(r["seed"])) for r in csv.DictReader(file)}


def write_configs(path: Path, configs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The design beside the curves: one row per configuration id, with how it was made."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["config", *configs[0]])
        writer.writeheader()
        for number, config in enumerate(configs):
            writer.writerow({"config": number, **config})
    note = path.with_suffix(".txt")
    note.write_text(
        f"design: scrambled Sobol (scipy.stats.qmc, seed 0), {len(configs)} configurations; "
        f"{args.epochs} epochs each on {args.train_size} stratified Training images (seed 0); "
        f"val = PublicTest; seed 0, and seeds 1 to {args.repeat_seeds} for the first "
        f"{args.repeats}\n"
    )


def train_one(
    config: dict[str, Any], seed: int, epochs: int, train: Any, val: Any
) -> list[dict[str, Any]]:
    from fer_search import engine
    from fer_search.config import TrainConfig

    cfg = TrainConfig.from_dict({**config, "epochs": epochs, "seed": seed, "model": "simple_cnn",
                                 "threads": 2, "amp": "off"})  # fmt: skip
    rows: list[dict[str, Any]] = []

    def each_epoch(stats: Any, _save: Any) -> bool:
        names = ("val_acc", "val_loss", "train_loss", "train_acc")
        row = {name: round(float(getattr(stats, name)), 5) for name in names}
        rows.append({"epoch": stats.epoch, **row, "epoch_s": round(stats.epoch_time, 2)})
        return False

    engine.train(cfg, train, val, on_epoch=each_epoch)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--repeat-seeds", type=int, default=1)
    parser.add_argument("--budget-min", type=float, default=40.0)
    args = parser.parse_args()

    import fer_search
    from fer_search.data import FERSplit

    started = time.monotonic()
    configs = design(args.configs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_configs(args.out.with_name(args.out.stem + "-configs.csv"), configs, args)
    data = fer_search.load_data(args.data)
    full = data.splits["train"]
    keep = stratified(full.labels, args.train_size)
    train = FERSplit("train", full.images[keep], full.labels[keep], full.class_names)
    runs = [(i, 0) for i in range(len(configs))]
    runs += [(i, seed) for seed in range(1, 1 + args.repeat_seeds)
             for i in range(min(args.repeats, len(configs)))]  # fmt: skip
    done = done_runs(args.out)
    fresh, trained = not args.out.is_file(), 0
    for number, seed in runs:
        if (number, seed) in done:
            continue
        if trained and time.monotonic() - started > 60 * args.budget_min:  # one run at least
            print(
                f"budget spent: {len(done)} of {len(runs)} runs in {args.out}; run again to go on"
            )
            return
        curve = train_one(configs[number], seed, args.epochs, train, data.splits["val"])
        with args.out.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            if fresh:
                writer.writeheader()
                fresh = False
            writer.writerows({"config": number, "seed": seed, **row} for row in curve)
        done.add((number, seed))
        trained += 1
        best = max(row["val_acc"] for row in curve)
        seconds = sum(row["epoch_s"] for row in curve)
        print(f"config {number} seed {seed}: best val_acc {best:.4f} ({seconds:.0f} s); "
              f"{len(done)} of {len(runs)}")  # fmt: skip
    print(f"all {len(runs)} runs in {args.out}")


if __name__ == "__main__":
    main()
