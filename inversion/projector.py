"""Project an image into W (or W+): find the pivot w whose image matches it.

As in PTI's projector (after stylegan2-ada-pytorch's): start at w_avg, Adam with a
learning-rate ramp-up and cosine ramp-down, Gaussian noise on w that decays over the
first 75% of the steps, LPIPS(VGG) on images downsampled to 256, and the generator's
noise maps optimised too, with multi-scale noise regularisation and renormalised
after every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from inversion.config import ProjectionConfig
from inversion.perceptual import Perceptual
from weights.networks import Generator

StepCallback = Callable[[int, Dict[str, float]], None]


@dataclass
class Projection:
    w: torch.Tensor  # [1, num_ws, w_dim]
    noise: Dict[str, torch.Tensor]  # noise_const buffer name -> map (as optimised)
    steps: int
    lpips: float
    mse: float
    history: List[float]


def noise_buffers(G: Generator) -> Dict[str, torch.Tensor]:
    """The synthesis layers' constant noise maps, by buffer name (e.g. 'b8.conv0.noise_const')."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}


def w_statistics(G: Generator, samples: int, seed: int) -> tuple:
    """(w_avg [1, 1, w_dim], w_std scalar) from `samples` mapped z's, as the projectors compute them."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).to(torch.float32)
    with torch.no_grad():
        w = torch.cat([G.mapping(zc.to(G.mapping.w_avg.device))[:, :1] for zc in z.split(1000)])
    w = w.double()
    w_avg = w.mean(0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / samples) ** 0.5)
    return w_avg.float(), w_std


def learning_rate(step: int, cfg: ProjectionConfig) -> float:
    """PTI / stylegan2-ada schedule: linear ramp-up, cosine ramp-down."""
    t = step / cfg.steps
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


def noise_regularization(noises: List[torch.Tensor]) -> torch.Tensor:
    """Penalise spatial autocorrelation of each noise map at every scale down to 8x8."""
    reg = 0.0
    for v in noises:
        n = v[None, None]
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean() ** 2
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


def project(
    G: Generator,
    target: torch.Tensor,
    cfg: ProjectionConfig,
    perceptual: Perceptual,
    seed: int = 0,
    callback: Optional[StepCallback] = None,
) -> Projection:
    """Find w for `target` ([1, 3, R, R] in [-1, 1]).  G's noise buffers are optimised in place
    when `cfg.optimize_noise`; pass a copy of the generator if the original must stay untouched."""
    device = target.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.w_avg_seed)
    num = G.num_ws if cfg.w_plus else 1
    w_opt = w_avg.to(device).repeat(1, num, 1).clone().requires_grad_(True)
    bufs = _random_noise(G, gen, device) if cfg.optimize_noise else {}
    opt = torch.optim.Adam([w_opt] + list(bufs.values()), betas=(0.9, 0.999), lr=cfg.lr)
    target_feats = [f.detach() for f in perceptual.features(target)]
    history = []
    try:
        for step in range(cfg.steps):
            t = step / cfg.steps
            noise_scale = w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, cfg)
            w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * noise_scale
            ws = w_opt + w_noise
            if not cfg.w_plus:
                ws = ws.repeat(1, G.num_ws, 1)
            img = G.synthesis(ws, noise_mode="const", force_fp32=True)
            dist = perceptual.distance(perceptual.features(img), target_feats)
            loss = dist
            if bufs:
                loss = loss + noise_regularization(list(bufs.values())) * cfg.noise_reg_weight
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _renormalise(bufs)
            history.append(float(dist.detach()))
            if callback is not None:
                callback(step, {"lpips": float(dist.detach()), "loss": float(loss.detach())})
    finally:
        for buf in bufs.values():
            buf.requires_grad_(False)
    w = w_opt.detach()
    if not cfg.w_plus:
        w = w.repeat(1, G.num_ws, 1)
    return _projection(G, w, bufs, target, perceptual, cfg.steps, history)


def _random_noise(G: Generator, gen: torch.Generator, device) -> Dict[str, torch.Tensor]:
    """G's noise buffers, filled with fresh Gaussian noise from `gen` and made trainable."""
    bufs = noise_buffers(G)
    with torch.no_grad():
        for buf in bufs.values():
            buf.copy_(torch.randn(buf.shape, generator=gen).to(device))
            buf.requires_grad_(True)
    return bufs


def _renormalise(bufs: Dict[str, torch.Tensor]) -> None:
    """Each noise map back to zero mean and unit variance, in place (after every step)."""
    with torch.no_grad():
        for buf in bufs.values():
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()


def _projection(
    G: Generator,
    w: torch.Tensor,
    bufs: Dict[str, torch.Tensor],
    target: torch.Tensor,
    perceptual: Perceptual,
    steps: int,
    history: List[float],
) -> Projection:
    """The result: the final w's image scored against the target, and a copy of the noise maps."""
    with torch.no_grad():
        img = G.synthesis(w, noise_mode="const", force_fp32=True)
        final_lpips = float(perceptual(img, target))
        final_mse = float(F.mse_loss(img, target))
    return Projection(
        w=w,
        noise={k: v.detach().clone() for k, v in bufs.items()},
        steps=steps,
        lpips=final_lpips,
        mse=final_mse,
        history=history,
    )
