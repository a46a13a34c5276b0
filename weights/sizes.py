"""How big a StyleGAN2 generator file is, from its architecture alone (no torch, nothing built).

A generator pickle of NVIDIA's (stylegan2-ada-pytorch, NGC, TensorFlow) holds G, G_ema and D in
float32.  `generator_floats` counts G's tensors as NVIDIA's networks_stylegan2 lays them out
(parameters and buffers: w_avg, the constant noise maps, the resampling filters);
`discriminator_floats` counts D's (the resnet discriminator, minibatch-stddev epilogue, no
conditioning).  tests/test_seed.py holds the generator count to weights.networks.Generator.
"""

from __future__ import annotations

from typing import Callable

FILTER = 16  # a 4x4 resampling filter buffer
RGB = 3


def _channels(channel_base: int, channel_max: int) -> Callable[[int], int]:
    return lambda res: min(channel_base // res, channel_max)


def _synthesis_layer(w_dim: int, cin: int, cout: int, res: int) -> int:
    """affine, weight (3x3), bias, noise_strength, noise_const (res x res), resample_filter."""
    return w_dim * cin + cin + cout * cin * 9 + cout + 1 + res * res + FILTER


def _torgb(w_dim: int, cin: int) -> int:
    return w_dim * cin + cin + RGB * cin + RGB


def generator_floats(init_kwargs: dict) -> int:
    """The number of float32 values in one generator (G or G_ema) of these init kwargs."""
    z_dim, w_dim, res = init_kwargs["z_dim"], init_kwargs["w_dim"], init_kwargs["img_resolution"]
    syn, layers = init_kwargs["synthesis_kwargs"], init_kwargs["mapping_kwargs"]["num_layers"]
    ch = _channels(syn["channel_base"], syn["channel_max"])
    n = z_dim * w_dim + w_dim + (layers - 1) * (w_dim * w_dim + w_dim) + w_dim  # mapping and w_avg
    n += ch(4) * 16 + _synthesis_layer(w_dim, ch(4), ch(4), 4) + _torgb(w_dim, ch(4)) + FILTER  # b4
    r = 8
    while r <= res:
        cin, cout = ch(r // 2), ch(r)
        n += _synthesis_layer(w_dim, cin, cout, r) + _synthesis_layer(w_dim, cout, cout, r)
        n += _torgb(w_dim, cout) + FILTER
        r *= 2
    return n


def discriminator_floats(res: int, channel_base: int, channel_max: int) -> int:
    """The number of float32 values in the resnet discriminator of a `res` px generator."""
    ch = _channels(channel_base, channel_max)
    n = RGB * ch(res) + ch(res) + FILTER  # fromrgb (1x1) of the first block
    r = res
    while r > 4:
        tmp, out = ch(r), ch(r // 2)
        n += tmp * tmp * 9 + tmp + FILTER  # conv0
        n += tmp * out * 9 + out + FILTER  # conv1, down
        n += tmp * out + FILTER  # skip (1x1, no bias)
        n += FILTER  # the block's own filter
        r //= 2
    c = ch(4)
    return n + (c + 1) * c * 9 + c + FILTER + c * 16 * c + c + c + 1  # epilogue: conv, fc, out


def pickle_mb(init_kwargs: dict) -> int:
    """G + G_ema + D in float32, in MB (10**6 bytes): what a generator pickle of this architecture weighs."""
    syn = init_kwargs["synthesis_kwargs"]
    d = discriminator_floats(init_kwargs["img_resolution"], syn["channel_base"], syn["channel_max"])
    return round((2 * generator_floats(init_kwargs) + d) * 4 / 1e6)
