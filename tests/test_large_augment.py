"""runtime.data.large_augment: the 126 frame's geometry and the statistics of each distortion."""
import math

import pytest
import torch

from runtime.data.large_augment import (FRAME, IMAGE, LargeAugment, draw_geometry, frame,
                                        large_batch, scale_pixels)
from runtime.errors import AllconvError

OFF = LargeAugment.off()
OFFSET = (FRAME - IMAGE) // 2      # 47: the image's first row and column in the frame


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, IMAGE, IMAGE), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_test_time_centres_the_image_unchanged_in_a_zero_frame():
    x = _images(3)
    out = large_batch(x, OFF, None)
    assert out.shape == (3, 3, FRAME, FRAME)
    inside = out[:, :, OFFSET:OFFSET + IMAGE, OFFSET:OFFSET + IMAGE]
    torch.testing.assert_close(inside, scale_pixels(x), atol=1e-4, rtol=0)
    outside = out.clone()
    outside[:, :, OFFSET:OFFSET + IMAGE, OFFSET:OFFSET + IMAGE] = 0
    assert outside.abs().max() < 1e-5
    assert scale_pixels(torch.tensor([0, 128, 255])).tolist() == [-1.0, 0.0, 127 / 128]


def test_shift_and_flip_move_the_image_exactly():
    x = scale_pixels(_images(2, seed=1))
    a = torch.diag_embed(torch.tensor([[-1.0, 1.0], [1.0, 1.0]]))        # image 0 mirrored
    shift = torch.tensor([[5.0, -3.0], [-16.0, 16.0]])                  # (x, y) pixels
    framed, mask, grid = frame(x, a, shift)
    assert grid.shape == (2, FRAME, FRAME, 2)
    for i, (dx, dy) in enumerate(shift.long().tolist()):
        want = x[i].flip(-1) if i == 0 else x[i]
        top, left = OFFSET + dy, OFFSET + dx
        torch.testing.assert_close(framed[i, :, top:top + IMAGE, left:left + IMAGE], want,
                                   atol=1e-4, rtol=0)
        assert float(mask[i].sum()) == pytest.approx(IMAGE * IMAGE, abs=1e-3)


def test_geometry_draws_follow_the_configuration():
    n, cfg = 20_000, LargeAugment()
    a, shift = draw_geometry(n, cfg, torch.Generator().manual_seed(0))
    # The second factor (slant or rotation) has determinant 1: det A = stretch_x * stretch_y * flip
    det = torch.linalg.det(a)
    assert det.abs().min() >= 0.8 ** 2 - 1e-5 and det.abs().max() <= 1.2 ** 2 + 1e-5
    assert (det < 0).float().mean() == pytest.approx(0.5, abs=0.02)          # flips
    # A = diag(stretch) @ K: the rows of A are orthogonal when K rotates, not when it slants;
    # about a third of the images rotate
    orthogonal = (a[:, 0, :] * a[:, 1, :]).sum(1).abs() < 1e-6
    assert orthogonal.float().mean() == pytest.approx(1 / 3, abs=0.03)
    assert shift.min() == -16 and shift.max() == 16 and torch.equal(shift, shift.round())
    assert shift.mean().abs() < 0.3
    assert shift.var().item() == pytest.approx((33 ** 2 - 1) / 12, rel=0.05)  # U{-16..16}
    lengths = a.norm(dim=1)                                                 # column lengths
    assert lengths.max() < 1.2 * math.hypot(1, 0.2) + 1e-5


def test_stretch_alone_is_uniform_in_its_range():
    cfg = LargeAugment(stretch=0.2, flip=False, alpha=0.0, max_shift=0)
    a, shift = draw_geometry(20_000, cfg, torch.Generator().manual_seed(1))
    sx = a[:, 0, 0]
    assert sx.min() >= 0.8 and sx.max() <= 1.2
    assert sx.mean().item() == pytest.approx(1.0, abs=0.005)
    assert sx.var().item() == pytest.approx(0.4 ** 2 / 12, rel=0.05)
    assert torch.all(a[:, 0, 1] == 0) and torch.all(shift == 0)


def test_colour_statistics_on_a_grey_image():
    """On a grey (zero after scaling) image only the colour terms remain: the mean over the image
    is the per-image shift (the gradients average out), its spread across images 0.2."""
    n = 400
    cfg = LargeAugment(stretch=0.0, flip=False, alpha=0.0, max_shift=0)
    grey = torch.full((n, 3, IMAGE, IMAGE), 128, dtype=torch.uint8)
    out = large_batch(grey, cfg, torch.Generator().manual_seed(2))
    inside = out[:, :, OFFSET:OFFSET + IMAGE, OFFSET:OFFSET + IMAGE]
    shift = inside.mean((2, 3))
    assert shift.std().item() == pytest.approx(cfg.colour_shift, rel=0.1)
    # left-right gradient: the difference between the last and first column over 2 * 31/32
    slope = (inside[..., -1] - inside[..., 0]).mean(-1) / (2 * 31 / 32)
    assert slope.std().item() == pytest.approx(cfg.colour_gradient, rel=0.1)
    outside = out.clone()
    outside[:, :, OFFSET:OFFSET + IMAGE, OFFSET:OFFSET + IMAGE] = 0
    assert outside.abs().max() < 1e-4                                  # the background stays 0


def test_colour_mixing_scales_with_its_setting():
    n = 300
    x = _images(n, seed=3)
    cfg = LargeAugment(stretch=0.0, flip=False, alpha=0.0, max_shift=0, colour_shift=0.0,
                       colour_gradient=0.0)
    out = large_batch(x, cfg, torch.Generator().manual_seed(4))
    inside = out[:, :, OFFSET:OFFSET + IMAGE, OFFSET:OFFSET + IMAGE]
    plain = scale_pixels(x)
    # least squares per image: inside = M plain; the off-diagonal entries have std 0.3 / 3
    m = torch.linalg.lstsq(plain.flatten(2).transpose(1, 2), inside.flatten(2).transpose(1, 2)
                           ).solution.transpose(1, 2)
    off = m[:, ~torch.eye(3, dtype=torch.bool)]
    assert off.std().item() == pytest.approx(cfg.colour_mix / 3, rel=0.1)
    assert (m.diagonal(dim1=1, dim2=2) - 1).std().item() == pytest.approx(0.1, rel=0.15)


def test_batches_are_reproducible_from_the_generator():
    x = _images(4)
    one = large_batch(x, LargeAugment(), torch.Generator().manual_seed(7))
    two = large_batch(x, LargeAugment(), torch.Generator().manual_seed(7))
    assert torch.equal(one, two)
    assert not torch.equal(one, large_batch(x, OFF, None))


def test_a_spec_table_overrides_the_defaults_and_bad_keys_are_named():
    cfg = LargeAugment.from_table({"max_shift": 8, "flip": False, "alpha": 0.1}, "large.toml")
    assert (cfg.max_shift, cfg.flip, cfg.alpha, cfg.stretch) == (8, False, 0.1, 0.2)
    with pytest.raises(AllconvError, match="large.toml: unknown key 'rotate'; valid keys: stretch"):
        LargeAugment.from_table({"rotate": 1}, "large.toml")
    with pytest.raises(AllconvError, match="'max_shift' must be int, not 2.5"):
        LargeAugment.from_table({"max_shift": 2.5}, "large.toml")
    with pytest.raises(AllconvError, match="'flip' must be bool"):
        LargeAugment.from_table({"flip": 1}, "large.toml")
    with pytest.raises(AllconvError, match="'stretch' must not be negative"):
        LargeAugment.from_table({"stretch": -0.1}, "large.toml")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_matches_the_test_time_frame():
    x = _images(2)
    torch.testing.assert_close(large_batch(x.cuda(), OFF, None).cpu(), large_batch(x, OFF, None),
                               atol=1e-4, rtol=0)
