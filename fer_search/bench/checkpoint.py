"""Figure 7: the megabytes a trial writes to its storage per epoch for checkpoints, before and
after the checkpoint policy, for simple_cnn and densenet169.

Before: a full resumable checkpoint every epoch, the best epoch's weights always stored as a
copy of their own. After: a checkpoint every `checkpoint_every` epochs, at the last epoch and at
each new best epoch (`tuning.trainable.should_checkpoint`), and a checkpoint written at the best
epoch stores the best weights once. Each epoch's checkpoint is written by the engine exactly as
a trial writes it, and measured on disk; the old format is the same payload with the best
weights copied back in.
"""

from __future__ import annotations

from typing import Any

from fer_search import engine
from fer_search.bench.measure import mib, subset
from fer_search.bench.plan import Context
from fer_search.config import TrainConfig

__all__ = ["EVERY", "checkpoint_figures", "epoch_sizes", "per_epoch_mib"]

EVERY = (1, 2, 4)  # checkpoint_every values compared


def epoch_sizes(ctx: Context, arch: str, epochs: int, images: int) -> list[dict[str, Any]]:
    """Train `arch` for `epochs` on `images` demo-or-run images; per epoch: the bytes of the
    checkpoint now, of the same checkpoint in the old format, and whether val_acc improved."""
    from pathlib import Path

    data = ctx.load(ctx.demo_size_if_demo(0.25))
    train, val = subset(data.splits["train"], images), subset(data.splits["val"], images)
    cfg = TrainConfig(
        model=arch, epochs=epochs, batch_size=16, width=16, device=ctx.device.type, threads=0
    )
    sizes: list[dict[str, Any]] = []
    best = {"acc": -1.0}
    folder = Path(ctx.tmp) / f"checkpoints-{arch}"
    folder.mkdir(exist_ok=True)

    def on_epoch(stats: Any, save: Any) -> bool:
        now, old = folder / "now.pt", folder / "old.pt"
        save(now)
        payload = engine.load_checkpoint(now)
        # the best weights as a copy of their own, as before (cloned: torch.save stores a tensor
        # that is already in the payload only once)
        best_weights = engine.best_state_dict(payload)
        payload["best_state_dict"] = {k: v.clone() for k, v in best_weights.items()}
        payload["best_is"] = None
        engine.save_checkpoint(old, payload)
        sizes.append(
            {"epoch": stats.epoch, "bytes": now.stat().st_size, "old_bytes": old.stat().st_size,
             "new_best": stats.val_acc > best["acc"]}
        )  # fmt: skip
        best["acc"] = max(best["acc"], stats.val_acc)
        return False

    engine.train(cfg, train, val, on_epoch=on_epoch)
    return sizes


def per_epoch_mib(sizes: list[dict[str, Any]], every: int) -> float:
    """MiB per epoch a trial writes under the policy with `checkpoint_every=every`."""
    from fer_search.tuning.trainable import should_checkpoint

    last = len(sizes)
    written = [
        s["bytes"] for s in sizes if should_checkpoint(s["epoch"], every, last, s["new_best"])
    ]
    return mib(sum(written)) / last


def checkpoint_figures(ctx: Context) -> list[dict[str, Any]]:
    epochs, images = (4, 64) if ctx.plan.quick else (8, 96)
    archs = ("simple_cnn",) if ctx.plan.quick else ("simple_cnn", "densenet169")
    figures = []
    for arch in archs:
        sizes = epoch_sizes(ctx, arch, epochs, images)
        before = mib(sum(s["old_bytes"] for s in sizes)) / len(sizes)
        after = {every: per_epoch_mib(sizes, every) for every in EVERY}
        improved = sum(s["new_best"] for s in sizes)
        figures.append(
            {
                "figure": "checkpoint MB per epoch",
                "arch": arch,
                "epochs": epochs,
                "train_images": images,
                "new_best_epochs": improved,
                "checkpoint_mib": round(mib(sizes[-1]["bytes"]), 2),
                "before_mib_per_epoch": round(before, 2),
                "after_mib_per_epoch": {str(k): round(v, 2) for k, v in after.items()},
                "ratio": before / after[1] if after[1] else None,
                "goal": "smaller",
                "met": after[1] < before,
                "summary": f"{before:.1f} MiB/epoch before; after: "
                + ", ".join(f"every {k}: {v:.1f}" for k, v in after.items())
                + f" ({improved} of {epochs} epochs a new best)",
            }
        )
    return figures
