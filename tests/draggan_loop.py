"""DragGAN's GUI drag loop (XingangPan/DragGAN viz/renderer.py), written from its formulation for the
fidelity tests: the reference a seed run's drag is held to (tests/test_seed.py).

(row, col) points as DragGAN keeps them; W+ optimises w[:, :6] of the full code, W one vector
(w[:, 0]) repeated into those six; the b128 features resized to the image size (bilinear) every step;
tracking by the `track_ord` norm in the r2 window (DragGAN's code: 2; the paper and photodrag: 1);
motion supervision by grid_sample(align_corners=True) at q + d over the r1 disc, L1; Adam.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

from weights.networks import Generator


def official_drag(
    G: Generator,
    w_start: torch.Tensor,
    handles: Sequence[Sequence[float]],
    targets: Sequence[Sequence[float]],
    steps: int,
    latent: str,
    lr: float = 2e-3,
    r1: float = 3,
    r2: float = 12,
    track_ord: int = 2,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`steps` iterations of DragGAN's loop from `w_start` with (x, y) `handles` and `targets`.
    Returns each step's tracked handles [steps, N, 2] (x, y), the final latent [1, num_ws, w_dim],
    and the handles tracked once more on that final latent [N, 2] (what a drag reports as final)."""
    h = G.img_resolution
    w0 = w_start.detach().clone()
    w = (w0.clone() if latent == "w+" else w0[:, 0].clone()).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    points = [[float(y), float(x)] for x, y in handles]
    goals = [[float(y), float(x)] for x, y in targets]
    refs: List[torch.Tensor] = []
    trail = []
    for step in range(steps + 1):
        feat = _features(G, _full_code(w, w0))
        if not refs:
            refs = [feat.detach()[:, :, round(p[0]), round(p[1])] for p in points]
        points = _track(feat, refs, points, round(r2 / 512 * h), track_ord)
        if step == steps:
            break
        trail.append([[p[1], p[0]] for p in points])
        loss = _motion_loss(feat, points, goals, round(r1 / 512 * h))
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = torch.tensor([[p[1], p[0]] for p in points], dtype=torch.float32)
    return torch.tensor(trail, dtype=torch.float32), _full_code(w, w0).detach(), final


def _full_code(w: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    ws = w.unsqueeze(1).repeat(1, 6, 1) if w.dim() == 2 else w
    return torch.cat([ws[:, :6], w0[:, 6:]], dim=1)


def _features(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    h = G.img_resolution
    _, feats = G.synthesis(ws, noise_mode="const", return_features=["b128"])
    return F.interpolate(feats["b128"].float(), [h, h], mode="bilinear")


def _track(feat: torch.Tensor, refs: List[torch.Tensor], points: List[list], rad: int, track_ord: int) -> List[list]:
    h = feat.shape[-1]
    out = []
    with torch.no_grad():
        for ref, p in zip(refs, points):
            up, left = int(max(p[0] - rad, 0)), int(max(p[1] - rad, 0))
            down, right = int(min(p[0] + rad + 1, h)), int(min(p[1] + rad + 1, h))
            patch = feat[:, :, up:down, left:right] - ref.reshape(1, -1, 1, 1)
            dist = torch.linalg.vector_norm(patch, ord=track_ord, dim=1)
            idx = int(torch.argmin(dist.view(-1)))
            out.append([idx // (right - left) + up, idx % (right - left) + left])
    return out


def _motion_loss(feat: torch.Tensor, points: List[list], goals: List[list], radius: int) -> torch.Tensor:
    h = feat.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    loss = feat.new_zeros(())
    for p, t in zip(points, goals):
        direction = torch.tensor([t[1] - p[1], t[0] - p[0]])
        if torch.linalg.norm(direction) > 1:
            inside = ((xx - p[1]) ** 2 + (yy - p[0]) ** 2) ** 0.5 < radius
            rows, cols = torch.where(inside)
            direction = direction / (torch.linalg.norm(direction) + 1e-7)
            grid = torch.stack([(cols + direction[0]) / (h - 1) * 2 - 1, (rows + direction[1]) / (h - 1) * 2 - 1], -1)
            moved = F.grid_sample(feat, grid[None, None], align_corners=True).squeeze(2)
            loss = loss + F.l1_loss(feat[:, :, rows, cols].detach(), moved)
    return loss
