"""Large All-CNN's input pipeline (Table 4, "large augmentation"): each 32x32 CIFAR image centred
in a 126x126 frame, randomly stretched, flipped, slanted or rotated, shifted and colour-shifted,
applied to whole batches on their device with one ``affine_grid``/``grid_sample``.

The set-up is Graham's spatially-sparse CIFAR-10 network (arXiv 1409.6070; the Kaggle CIFAR-10
SparseConvNet, 126x126 input, the same 320C2 ... 1920C1 layers with max-pooling where Table 5
has strided convs). Each parameter below names where it comes from:

- pixels: uint8 scaled to [-1, 1] by (x - 128) / 128, the frame outside the image 0 (a sparse
  background), as SparseConvNet feeds its input sites; no GCN/ZCA.
- stretch: x and y scaled by 1 + U(-0.2, 0.2) each (SparseConvNet's CIFAR-10 distort()).
- flip: left-right with probability 1/2 (same).
- one of three with equal chance, alpha ~ U(-0.2, 0.2): slant along x, slant along y, or a
  rotation by alpha radians (about +-11.5 degrees) (same).
- shift: integer translation U{-16..16} pixels on each axis (OpenCVPicture_maxTranslation=16).
- colour: the network's ColorShiftLayer(0.2, 0.3, 0.6, 0.6); our reading (its code was not
  available): a per-image shift N(0, 0.2) per channel, a channel-mixing matrix I + N(0, 0.3/3)
  per entry (0.3 spread over the 3 inputs of each output channel), and linear colour gradients
  across the image N(0, 0.6) per channel along x and along y (image coordinates in [-1, 1]).
  Colour applies to image pixels only; the background stays 0.

Test time: the image centred at scale 1, unflipped, unshifted and uncoloured, one pass
(Graham's test step replaces distort() by the plain picture).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from runtime.data.cifar import IMAGE_SHAPE
from runtime.errors import AllconvError

FRAME = 126
IMAGE = IMAGE_SHAPE[-1]       # a CIFAR image's side


def takes_frame(input_shape) -> bool:
    """Whether a CIFAR net's input sample (C, H, W) is this frame, Large All-CNN's."""
    return tuple(input_shape) == (3, FRAME, FRAME)


@dataclass(frozen=True)
class LargeAugment:
    """The random distortions; ``LargeAugment.off()`` is test time (none of them)."""

    stretch: float = 0.2
    flip: bool = True
    alpha: float = 0.2
    max_shift: int = 16
    colour_shift: float = 0.2
    colour_mix: float = 0.3
    colour_gradient: float = 0.6

    @classmethod
    def off(cls) -> "LargeAugment":
        return cls(0.0, False, 0.0, 0, 0.0, 0.0, 0.0)

    @classmethod
    def from_table(cls, table: dict, where: str) -> "LargeAugment":
        """The defaults overridden by a spec's TOML table; ``where`` names it in errors."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in table.items():
            if key not in fields:
                raise AllconvError(f"{where}: unknown key {key!r}; valid keys: "
                                   f"{', '.join(fields)}")
            kind = {"bool": bool, "int": int, "float": (int, float)}[fields[key]]
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
                raise AllconvError(f"{where}: {key!r} must be {fields[key]}, not {value!r}")
            if not isinstance(value, bool) and value < 0:
                raise AllconvError(f"{where}: {key!r} must not be negative, not {value!r}")
        return cls(**table)


def scale_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 float) images to [-1, 1]: (x - 128) / 128."""
    return (images.float() - 128.0) / 128.0


def draw_geometry(n: int, cfg: LargeAugment, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image a 2x2 matrix A (image -> frame, pixels) and a shift t (pixels), as (n, 2, 2)
    and (n, 2) on the generator's device: A = [stretch x flip] @ [slant x | slant y | rotation]."""
    dev = generator.device
    def uniform(*shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator, device=dev)
    a = torch.zeros(n, 2, 2, device=dev)
    a[:, 0, 0] = 1 + uniform(n, low=-cfg.stretch, high=cfg.stretch)
    a[:, 1, 1] = 1 + uniform(n, low=-cfg.stretch, high=cfg.stretch)
    if cfg.flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=dev)
        a[:, 0, 0] *= 1 - 2 * flips
    kind = torch.randint(0, 3, (n,), generator=generator, device=dev)
    alpha = uniform(n, low=-cfg.alpha, high=cfg.alpha)
    cos, sin, zero, one = alpha.cos(), alpha.sin(), torch.zeros_like(alpha), torch.ones_like(alpha)
    second = torch.stack([
        torch.stack([one, zero, alpha, one], 1),          # slant along x
        torch.stack([one, alpha, zero, one], 1),          # slant along y
        torch.stack([cos, -sin, sin, cos], 1)], 1)        # rotation
    a = a @ second[torch.arange(n, device=dev), kind].reshape(n, 2, 2)
    shift = torch.randint(-cfg.max_shift, cfg.max_shift + 1, (n, 2), generator=generator,
                          device=dev).float()
    return a, shift


def frame(images: torch.Tensor, a: torch.Tensor, shift: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place scaled images (n, C, 32, 32) in the 126 frame, frame point p = A q + t for image
    point q (pixels from each centre; x first). Returns (framed, mask of image pixels, grid):
    grid (n, 126, 126, 2) holds each frame pixel's image coordinates q / 16, in [-1, 1] inside."""
    n = len(images)
    inverse = torch.linalg.inv(a)
    theta = torch.cat([inverse * ((FRAME / 2) / (IMAGE / 2)),
                       -(inverse @ shift.unsqueeze(-1)) / (IMAGE / 2)], 2)
    grid = F.affine_grid(theta, (n, images.shape[1], FRAME, FRAME), align_corners=False)
    framed = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    mask = F.grid_sample(torch.ones_like(images[:, :1]), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)
    return framed, mask, grid


def colour(framed: torch.Tensor, mask: torch.Tensor, grid: torch.Tensor, cfg: LargeAugment,
           generator: torch.Generator, draws: int | None = None, part: slice | None = None
           ) -> torch.Tensor:
    """Per-image colour shift, channel mixing and x/y colour gradients on the image pixels;
    drawn for ``draws`` images (default: the batch's), of which ``part`` are these."""
    n, c = draws or len(framed), framed.shape[1]
    part = part or slice(0, n)
    dev = generator.device
    def normal(*shape, std):
        return std * torch.randn(shape, generator=generator, device=dev)[part]
    mix = torch.eye(c, device=dev) + normal(n, c, c, std=cfg.colour_mix / c)
    offset = normal(n, c, 1, 1, std=cfg.colour_shift)
    gx, gy = (normal(n, c, 1, 1, std=cfg.colour_gradient) for _ in range(2))
    qx, qy = grid[:, None, :, :, 0], grid[:, None, :, :, 1]
    out = torch.einsum("nij,njhw->nihw", mix, framed) + offset + gx * qx + gy * qy
    return out * mask


def large_batch(images: torch.Tensor, cfg: LargeAugment, generator: torch.Generator | None,
                draws: int | None = None, part: slice | None = None) -> torch.Tensor:
    """The Large All-CNN input (n, 3, 126, 126) of uint8 CIFAR images (n, 3, 32, 32) on their
    device; ``generator`` (on that device) draws the distortions, None with ``LargeAugment.off()``.
    The distortions are drawn for ``draws`` images (default n), of which ``part`` are these
    ``images`` (a process's slice of a global batch keeps the distortions of its positions)."""
    x = scale_pixels(images)
    n = len(x)
    if cfg == LargeAugment.off():
        eye = torch.eye(2, device=x.device).expand(n, 2, 2)
        return frame(x, eye, torch.zeros(n, 2, device=x.device))[0]
    part = part or slice(0, n)
    a, shift = draw_geometry(draws or n, cfg, generator)
    framed, mask, grid = frame(x, a[part], shift[part])
    if cfg.colour_shift or cfg.colour_mix or cfg.colour_gradient:
        framed = colour(framed, mask, grid, cfg, generator, draws, part)
    return framed
