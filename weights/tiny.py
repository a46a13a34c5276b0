"""A small generator of the real StyleGAN2 architecture with random weights, built in memory.

`photodrag doctor` runs the whole pipeline on it to prove an install works without the
pretrained files; its images are noise, by design.  Built under a forked RNG, so the
caller's random state is left as it was.
"""

from __future__ import annotations

import torch

from weights.networks import Generator

TINY_NAME = "tiny-random"  # how a run records this model (it is not a registry file)


def tiny_random_generator(res: int = 64, dim: int = 32, seed: int = 0) -> Generator:
    """A `res` px generator (2 mapping layers, `dim` channels) with random, non-trivial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(
            z_dim=dim,
            w_dim=dim,
            img_resolution=res,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=res * 8, channel_max=dim, conv_clamp=256),
        )
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength") or name.endswith("bias"):
                    p.normal_(0, 0.1)  # zero at init: random values make the image vary
            G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)
