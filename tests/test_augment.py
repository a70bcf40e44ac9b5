"""Batch augmentation: identity at zero, per-sample draws, determinism, mixing; class balancing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_search.augment import (
    _affine_grid,
    augment_batch,
    class_weights,
    normalize,
    one_hot,
    symmetric_beta,
)
from fer_search.config import PIXEL_MEAN, PIXEL_STD, AugmentConfig

ALL_ON = AugmentConfig(
    hflip=0.5,
    crop_pad=4,
    rotation=15,
    scale=0.1,
    brightness=0.2,
    contrast=0.3,
    erasing=0.5,
    mixup=0.4,
    cutmix=1.0,
)


def batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 7, (n,), generator=g)
    return normalize(images), one_hot(labels, 7)


def same_images(n: int = 64) -> torch.Tensor:
    """n copies of one image with no left-right or shift symmetry."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 1, 48, 48, generator=g).expand(n, -1, -1, -1).contiguous()


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image (1, H, W) moved by (dy, dx) pixels, zeros shifted in."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_normalize_maps_pixels_to_normalised_floats():
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat(2, 48, 24)
    x = normalize(images)
    assert x.shape == (2, 1, 48, 48) and x.dtype == torch.float32
    assert x[0, 0, 0, 0].item() == pytest.approx(-PIXEL_MEAN / PIXEL_STD, rel=1e-6)
    assert x[0, 0, 0, 1].item() == pytest.approx((1 - PIXEL_MEAN) / PIXEL_STD, rel=1e-6)
    assert normalize(images[:, None]).shape == (2, 1, 48, 48)
    with pytest.raises(ValueError, match="uint8"):
        normalize(images.float())


def test_one_hot():
    target = one_hot(torch.tensor([2, 0]), 3)
    assert target.dtype == torch.float32
    assert target.tolist() == [[0, 0, 1], [1, 0, 0]]


def test_all_knobs_zero_is_the_identity():
    x, target = batch()
    out, out_target = augment_batch(x, target, AugmentConfig())
    assert out is x and out_target is target


def test_all_knobs_on_keeps_shapes_and_target_sums():
    x, target = batch()
    out, out_target = augment_batch(x, target, ALL_ON, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out_target.shape == target.shape and out_target.dtype == target.dtype
    torch.testing.assert_close(out_target.sum(1), torch.ones(16))
    assert torch.isfinite(out).all()


def test_bad_input_says_what_it_got():
    x, target = batch()
    with pytest.raises(ValueError, match=r"float \(B, C, H, W\).*torch.uint8"):
        augment_batch(x.to(torch.uint8), target, ALL_ON)
    with pytest.raises(ValueError, match=r"targets.*\(15, 7\)"):
        augment_batch(x, target[:15], ALL_ON)


def test_hflip_is_drawn_per_image():
    x = same_images()
    out, _ = augment_batch(x, torch.ones(64, 1), AugmentConfig(hflip=0.5))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all()
    assert 10 < flipped.sum() < 54


def test_hflip_inside_the_affine_is_an_exact_mirror():
    x = same_images(8)
    cfg = AugmentConfig(hflip=1.0, rotation=1e-9)  # affine path, no visible rotation
    out, _ = augment_batch(x, torch.ones(8, 1), cfg)
    torch.testing.assert_close(out, x.flip(-1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(48, 48), (40, 56)])
def test_affine_grid_equals_torch_affine_grid(size):
    h, w = size
    theta = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [16, 1, h, w], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, h, w), expected)


def test_crop_pad_shifts_each_image_by_its_own_whole_pixels():
    x = same_images()
    out, _ = augment_batch(x, torch.ones(64, 1), AugmentConfig(crop_pad=3))
    candidates = torch.stack(
        [shifted(x[0], dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    )  # (49, 1, 48, 48)
    distance = (out[:, None] - candidates[None]).abs().flatten(2).amax(2)  # (64, 49)
    best = distance.min(1)
    assert (best.values < 1e-4).all()
    assert len(best.indices.unique()) > 10


def test_seeded_generator_makes_it_deterministic():
    x, target = batch()
    a = augment_batch(x, target, ALL_ON, torch.Generator().manual_seed(7))
    b = augment_batch(x, target, ALL_ON, torch.Generator().manual_seed(7))
    c = augment_batch(x, target, ALL_ON, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def labelled_constant_images(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with its class index, so a mix's pixels reveal its mixing weights."""
    labels = torch.arange(n) % 7
    x = labels.float()[:, None, None, None].expand(-1, 1, 48, 48).contiguous()
    return x, one_hot(labels, 7)


@pytest.mark.parametrize(
    "cfg", [AugmentConfig(mixup=0.4), AugmentConfig(cutmix=1.0), AugmentConfig(mixup=1, cutmix=1)]
)
def test_mixed_targets_match_the_mixed_pixels(cfg: AugmentConfig):
    x, target = labelled_constant_images()
    out, mixed = augment_batch(x, target, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed.sum(1), torch.ones(64))
    assert (mixed >= 0).all() and ((mixed > 0).sum(1) <= 2).all()
    assert (mixed.max(1).values < 1).any()  # some images really are mixtures
    # the mean pixel is the target-weighted class index for mixup and (area-corrected) cutmix
    torch.testing.assert_close(out.mean((1, 2, 3)), mixed @ torch.arange(7.0), atol=1e-4, rtol=0)


def test_cutmix_pastes_whole_pixels_from_the_partner():
    x, target = labelled_constant_images()
    cfg = AugmentConfig(cutmix=1.0)
    out, mixed = augment_batch(x, target, cfg, torch.Generator().manual_seed(0))
    for i in range(64):
        values = set(out[i].unique().tolist())
        assert values <= set(torch.nonzero(mixed[i]).flatten().float().tolist()) | {float(i % 7)}


def test_erasing_zeros_one_rectangle_per_image():
    x = torch.ones(32, 1, 48, 48)
    out, _ = augment_batch(x, torch.ones(32, 1), AugmentConfig(erasing=1.0))
    for image in out[:, 0]:
        erased = image == 0
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        box = erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a filled rectangle
        assert 0.01 <= erased.float().mean() <= 0.25
        assert (image[~erased] == 1).all()


def test_brightness_and_contrast_stay_in_the_pixel_range():
    x, target = batch(64)
    out, _ = augment_batch(x, target, AugmentConfig(brightness=0.5, contrast=0.8))
    low, high = -PIXEL_MEAN / PIXEL_STD, (1 - PIXEL_MEAN) / PIXEL_STD
    assert out.min() >= low - 1e-6 and out.max() <= high + 1e-6
    shift = (out - x).mean((1, 2, 3))
    assert shift.std() > 0.05  # each image got its own change


def test_contrast_keeps_each_image_mean():
    x = torch.randn(16, 1, 48, 48) * 0.1
    out, _ = augment_batch(x, torch.ones(16, 1), AugmentConfig(contrast=0.5))
    torch.testing.assert_close(out.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5, rtol=0)
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("alpha", [0.2, 0.4, 0.5, 1.0, 2.0])
def test_symmetric_beta_draws_follow_beta(alpha):
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    # float64: in float32, Beta(0.2, 0.2)'s mass within 6e-8 of 1 (2 %) rounds to exactly 1
    draws = symmetric_beta(alpha, 20000, generator=g, dtype=torch.float64).numpy()
    assert ((draws >= 0) & (draws <= 1)).all()
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 0.01


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_symmetric_beta_draws_only_from_its_generator(alpha):
    before = torch.get_rng_state()
    a = symmetric_beta(alpha, 64, generator=torch.Generator().manual_seed(3))
    b = symmetric_beta(alpha, 64, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)  # torch's global stream is untouched
    # a generator restored mid-stream (a resumed run) continues with the same draws
    g = torch.Generator().manual_seed(4)
    symmetric_beta(alpha, 64, generator=g)
    state = g.get_state()
    second = symmetric_beta(alpha, 64, generator=g)
    assert torch.equal(symmetric_beta(alpha, 64, generator=g.set_state(state)), second)


def test_symmetric_beta_needs_a_positive_alpha():
    with pytest.raises(ValueError, match="alpha > 0, got 0.0"):
        symmetric_beta(0.0, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_symmetric_beta_on_cuda_with_a_cuda_generator():
    g = torch.Generator(device="cuda").manual_seed(0)
    for alpha in (0.2, 1.0):
        draws = symmetric_beta(alpha, 1000, device="cuda", generator=g)
        assert draws.is_cuda and ((draws >= 0) & (draws <= 1)).all()
        assert abs(draws.mean().item() - 0.5) < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_a_cuda_generator():
    x, target = batch()
    g = torch.Generator(device="cuda").manual_seed(0)
    out, mixed = augment_batch(x.cuda(), target.cuda(), ALL_ON, g)
    assert out.is_cuda and mixed.is_cuda
    torch.testing.assert_close(mixed.sum(1), torch.ones(16, device="cuda"))


def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 3)
    assert weights.dtype == np.float32
    assert weights.mean() == pytest.approx(1.0)
    assert weights[1] == pytest.approx(3 * weights[0])
    assert weights[2] == pytest.approx(1.5 * weights[0])
    absent = class_weights(np.array([0, 0, 1]), 3)
    assert absent[2] == 0 and absent[:2].mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        class_weights(np.array([0, 3]), 3)
