"""Pivotal tuning: train the generator so that G(pivot) reproduces the photo.

The pivot w stays fixed; every generator weight is trainable (Adam, lr from TuningConfig); the loss is
L2 + LPIPS(alex) and training stops as soon as LPIPS falls to the threshold.  LPIPS sees the images at
the size the given `Perceptual` takes them (full resolution in PTI; the caller picks the network).  The
generator's noise buffers are not trained: the tuned copy keeps the noise maps of the generator passed in.
The optional locality regulariser (off by default, as in PTI) keeps images of latents near the pivot
unchanged: latents sampled with truncation (0.5) and rendered without noise, as PTI does.
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
    lpips: float  # LPIPS(alex) of G_tuned(pivot) vs target, after tuning (the stop rule's LPIPS)
    mse: float
    history: List[float]
    lpips_resolution: int  # the image size the stop rule's LPIPS saw


def locality_latent(G_frozen: Generator, pivot: torch.Tensor, cfg: TuningConfig, gen: torch.Generator) -> torch.Tensor:
    """A latent `locality_alpha` away from the pivot, towards a random w mapped with `locality_truncation`."""
    z = torch.randn([1, G_frozen.z_dim], generator=gen).to(pivot.device)
    with torch.no_grad():
        w_z = G_frozen.mapping(z, truncation_psi=cfg.locality_truncation)
        direction = w_z - pivot
        return pivot + cfg.locality_alpha * direction / direction.norm()


def _locality_loss(
    G: Generator,
    G_frozen: Generator,
    pivot: torch.Tensor,
    cfg: TuningConfig,
    perceptual: Perceptual,
    gen: torch.Generator,
) -> torch.Tensor:
    w_near = locality_latent(G_frozen, pivot, cfg, gen)
    with torch.no_grad():
        ref = G_frozen.synthesis(w_near, noise_mode=cfg.locality_noise_mode, force_fp32=True)
    img = G.synthesis(w_near, noise_mode=cfg.locality_noise_mode, force_fp32=True)
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
    """Return a tuned copy of `G` (with `G`'s noise maps); `G` itself is never modified."""
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
    return Tuning(
        generator=G,
        steps=steps,
        stopped_early=stopped,
        lpips=final_lpips,
        mse=final_mse,
        history=history,
        lpips_resolution=perceptual.input_size(target.shape[-1]),
    )
