"""Pure functions on feature maps: bilinear sampling, motion supervision, point tracking.

Points are (x, y) in image pixels of the aligned image (size S), pixel centres at integers.
A feature map F of size R (e.g. the 128x128 `b128` output) is read as if it had been
resized to S x S with bilinear interpolation (align_corners=False), without building that
S x S map: image pixel (x, y) sits at feature coordinate ((x + 0.5) R/S - 0.5, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.geometry import PIXEL_CENTRE


def scale_radius(r_at_512: float, size: int) -> int:
    """A radius given for 512 px images, scaled to `size` (at least 1 px), as DragGAN does."""
    return max(1, int(round(r_at_512 * size / 512)))


def sample(feat: torch.Tensor, pts: torch.Tensor, size: int) -> torch.Tensor:
    """Features at image points: feat [1, C, R, R], pts [..., 2] (x, y) -> [..., C].

    Equals reading the bilinearly resized S x S map at integer points (border-clamped), and
    interpolates bilinearly between feature cells at fractional points.
    """
    shape = pts.shape[:-1]
    grid = (pts.reshape(1, 1, -1, 2).to(feat.dtype) + PIXEL_CENTRE) * (2.0 / size) - 1.0
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].t().reshape(*shape, feat.shape[1])


def disc_offsets(radius: int, device=None) -> torch.Tensor:
    """Integer (dx, dy) offsets with dx^2 + dy^2 < radius^2 (the paper's patch Omega_1)."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    keep = dx.square() + dy.square() < radius**2
    return torch.stack([dx[keep], dy[keep]], dim=-1)


def square_offsets(radius: int, device=None) -> torch.Tensor:
    """Integer offsets of the (2r+1)^2 tracking window (the paper's Omega_2)."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def motion_loss(
    feat: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, r1: int, size: int, min_distance: float = 1.0
) -> torch.Tensor:
    """Sum over handles of mean |F(q + d) - sg(F(q))| over q in the disc of radius r1 around the handle.

    d is the unit vector from handle to target; handles already within `min_distance` of their
    target contribute nothing (as in the official implementation).
    """
    offsets = disc_offsets(r1, feat.device)
    loss = feat.new_zeros(())
    for p, t in zip(handles, targets):
        direction = t - p
        norm = torch.linalg.norm(direction)
        if float(norm) <= min_distance:
            continue
        d = direction / (norm + 1e-7)
        q = torch.round(p) + offsets
        moved = sample(feat, q + d, size)
        still = sample(feat, q, size).detach()
        loss = loss + (moved - still).abs().mean()
    return loss


def mask_loss(feat: torch.Tensor, feat0: torch.Tensor, movable: torch.Tensor) -> torch.Tensor:
    """Mean |(F - F0) (1 - M)| at the feature map's resolution; `movable` is M in [0, 1], any size."""
    m = movable.to(feat.dtype)[None, None]
    if m.shape[-1] != feat.shape[-1]:
        m = F.interpolate(m, size=feat.shape[-2:], mode="area")
    return ((feat - feat0) * (1.0 - m)).abs().mean()


def track(feat: torch.Tensor, refs: torch.Tensor, handles: torch.Tensor, r2: int, size: int) -> torch.Tensor:
    """New handle positions: the pixel in the square of radius r2 around each handle (clipped to the
    image) whose feature is nearest in L1 to the handle's initial feature (paper, Eq. 2).

    L1, as the paper writes it; DragGAN's official code uses the L2 norm here."""
    offsets = square_offsets(r2, feat.device)
    out = []
    with torch.no_grad():
        for p, ref in zip(handles, refs):
            cand = torch.round(p) + offsets
            inside = ((cand >= 0) & (cand <= size - 1)).all(dim=1)
            cand = cand[inside]
            dist = (sample(feat, cand, size) - ref).abs().sum(dim=1)
            out.append(cand[int(torch.argmin(dist))])
    return torch.stack(out)
