"""Pivotal tuning: train the generator so that G(pivot) reproduces the photo.

The pivot w stays fixed; every generator weight is trainable (Adam, lr from TuningConfig); the loss is
L2 + LPIPS(alex) and training stops as soon as LPIPS falls below the threshold.  The
optional locality regulariser (off by default, as in PTI) keeps images of latents near
the pivot unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from inversion.config import TuningConfig
from inversion.perceptual import Perceptual
from weights.networks import Generator

StepCallback = Callable[[int, Dict[str, float]], None]


@dataclass
class Tuning:
    generator: Generator
    steps: int  # optimisation steps actually run
    stopped_early: bool
    lpips: float  # LPIPS(alex) of G_tuned(pivot) vs target, after tuning
    mse: float
    history: List[float]


def _locality_loss(
    G: Generator,
    G_frozen: Generator,
    pivot: torch.Tensor,
    cfg: TuningConfig,
    perceptual: Perceptual,
    gen: torch.Generator,
) -> torch.Tensor:
    z = torch.randn([1, G.z_dim], generator=gen).to(pivot.device)
    with torch.no_grad():
        w_z = G_frozen.mapping(z)
        direction = w_z - pivot
        w_near = pivot + cfg.locality_alpha * direction / direction.norm()
        ref = G_frozen.synthesis(w_near, noise_mode="const", force_fp32=True)
    img = G.synthesis(w_near, noise_mode="const", force_fp32=True)
    return F.mse_loss(img, ref) * cfg.locality_l2_weight + perceptual(img, ref) * cfg.locality_lpips_weight


def tune(
    G: Generator,
    pivot: torch.Tensor,
    target: torch.Tensor,
    cfg: TuningConfig,
    perceptual: Perceptual,
    seed: int = 0,
    callback: Optional[StepCallback] = None,
) -> Tuning:
    """Return a tuned copy of `G`; `G` itself is never modified."""
    G_frozen = G
    G = copy.deepcopy(G).train(False).requires_grad_(True)
    G.mapping.requires_grad_(False)  # the pivot is fixed, so the mapping gets no gradient anyway
    params = [p for p in G.synthesis.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    pivot = pivot.detach()
    target_feats = [f.detach() for f in perceptual.features(target)]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    history: List[float] = []
    steps = 0
    stopped = False
    for step in range(cfg.steps):
        img = G.synthesis(pivot, noise_mode="const", force_fp32=True)
        lp = perceptual.distance(perceptual.features(img), target_feats)
        lp_value = float(lp.detach())
        history.append(lp_value)
        if lp_value <= cfg.lpips_threshold:
            stopped = True
            break
        loss = F.mse_loss(img, target) * cfg.l2_weight + lp * cfg.lpips_weight
        if cfg.locality_regularization:
            loss = loss + _locality_loss(G, G_frozen, pivot, cfg, perceptual, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if callback is not None:
            callback(step, {"lpips": lp_value, "loss": float(loss.detach())})
    G.requires_grad_(False).eval()
    with torch.no_grad():
        img = G.synthesis(pivot, noise_mode="const", force_fp32=True)
        final_lpips = float(perceptual(img, target))
        final_mse = float(F.mse_loss(img, target))
    return Tuning(generator=G, steps=steps, stopped_early=stopped, lpips=final_lpips, mse=final_mse, history=history)
