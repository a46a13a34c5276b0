"""The generator computed the plain way: the oracle and the baseline for the fast path.

Everything here follows the StyleGAN2 paper and NVIDIA's reference code step by step,
with no algebraic shortcuts: per sample, the styles scale the convolution weights, the
weights are demodulated, one grouped convolution runs over the batch, 2x up-sampling
inserts zeros, pads and applies the full 2-D FIR filter, then noise, bias, leaky ReLU,
gain and clamp are applied one after another.  It reads the parameters and buffers of
an ordinary `Generator` (nothing is copied), always runs in float32, and is kept simple
on purpose: tests hold the fast path in `weights.ops` / `weights.networks` to it, and
every benchmark times the fast path against it in the same process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from weights.networks import (
    NOISE_MODES,
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
)

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fc(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Equalised-learning-rate linear layer: x @ (W * weight_gain)^T + b * bias_gain, then activation."""
    x = x @ (layer.weight * layer.weight_gain).t() + layer.bias * layer.bias_gain
    if layer.activation == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA) * LRELU_GAIN
    return x


def mapping(
    m: MappingNetwork, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> torch.Tensor:
    """z -> ws [N, num_ws, w_dim]: normalise z, the FC stack, broadcast, truncate."""
    x = z.float() / (z.float().square().mean(dim=1, keepdim=True) + 1e-8).sqrt()
    for i in range(m.num_layers):
        x = fc(getattr(m, f"fc{i}"), x)
    ws = x.unsqueeze(1).repeat(1, m.num_ws, 1)
    if truncation_psi != 1:
        cutoff = m.num_ws if truncation_cutoff is None else truncation_cutoff
        head = m.w_avg + (ws[:, :cutoff] - m.w_avg) * truncation_psi
        ws = torch.cat([head, ws[:, cutoff:]], dim=1)
    return ws


def upfirdn_up2(x: torch.Tensor, f: torch.Tensor, extra_pad: int = 0) -> torch.Tensor:
    """2x up-sampling as upfirdn2d does it: insert zeros, pad, 2-D FIR filter times 4.

    The padding is upsample2d's default for up=2 plus `extra_pad` on every side (an
    up-sampling 3x3 conv filters a ring one pixel wider, then convolves without padding).
    """
    n, c, h, w = x.shape
    up = x.new_zeros([n, c, 2 * h, 2 * w])
    up[:, :, ::2, ::2] = x
    fh, fw = f.shape
    pad0, pad1 = (fw + 1) // 2 + extra_pad, (fw - 2) // 2 + extra_pad
    up = F.pad(up, [pad0, pad1, pad0, pad1])
    k = (f * 4).flip([0, 1]).reshape(1, 1, fh, fw).repeat(c, 1, 1, 1)
    return F.conv2d(up, k, groups=c)


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    up: bool,
    resample_filter: torch.Tensor | None,
) -> torch.Tensor:
    """Modulate, demodulate, (up-sample), then one grouped convolution over the batch."""
    n, in_c = x.shape[:2]
    out_c, _, kh, kw = weight.shape
    wts = weight.unsqueeze(0) * styles.reshape(n, 1, in_c, 1, 1)  # [n, out, in, kh, kw]
    if demodulate:
        wts = wts / (wts.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).sqrt()
    if up:
        # NVIDIA's up-sampling layers run a true convolution (flip_weight=False), the others
        # a cross-correlation; a checkpoint's weights are only right with the same choice.
        x = upfirdn_up2(x, resample_filter, extra_pad=kh // 2)
        wts = wts.flip([3, 4])
    x = x.reshape(1, n * in_c, *x.shape[2:])
    x = F.conv2d(x, wts.reshape(n * out_c, in_c, kh, kw), padding=0 if up else kh // 2, groups=n)
    return x.reshape(n, out_c, *x.shape[2:])


def bias_act(x: torch.Tensor, bias: torch.Tensor, lrelu: bool, clamp: float | None) -> torch.Tensor:
    """Bias, then leaky ReLU times sqrt(2) (when `lrelu`), then clamp."""
    x = x + bias.reshape(1, -1, 1, 1)
    if lrelu:
        x = F.leaky_relu(x, LRELU_ALPHA) * LRELU_GAIN
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def synthesis_layer(layer: SynthesisLayer, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
    """Modulated 3x3 conv, noise, bias, leaky ReLU times sqrt(2), clamp."""
    styles = fc(layer.affine, w)
    x = modulated_conv(x, layer.weight, styles, demodulate=True, up=layer.up, resample_filter=layer.resample_filter)
    if noise_mode == "const":
        x = x + layer.noise_const * layer.noise_strength
    elif noise_mode == "random":
        x = x + torch.randn([x.shape[0], 1, layer.resolution, layer.resolution]) * layer.noise_strength
    return bias_act(x, layer.bias, lrelu=True, clamp=layer.conv_clamp)


def torgb(layer: ToRGBLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Modulated 1x1 conv without demodulation, bias, clamp."""
    styles = fc(layer.affine, w) * layer.weight_gain
    x = modulated_conv(x, layer.weight, styles, demodulate=False, up=False, resample_filter=None)
    return bias_act(x, layer.bias, lrelu=False, clamp=layer.conv_clamp)


def synthesis_block(
    block: SynthesisBlock,
    x: torch.Tensor | None,
    img: torch.Tensor | None,
    ws: torch.Tensor,
    noise_mode: str,
    rgb: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One resolution: (const | conv0), conv1, and the up-sampled image plus torgb."""
    if block.in_channels == 0:
        x = block.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        x = synthesis_layer(block.conv1, x, ws[:, 0], noise_mode)
    else:
        x = synthesis_layer(block.conv0, x, ws[:, 0], noise_mode)
        x = synthesis_layer(block.conv1, x, ws[:, 1], noise_mode)
    if not rgb:
        return x, img
    if img is not None:
        img = upfirdn_up2(img, block.resample_filter)
    y = torgb(block.torgb, x, ws[:, block.num_conv])
    return x, y if img is None else img + y


def synthesis(
    net: SynthesisNetwork,
    ws: torch.Tensor,
    noise_mode: str = "const",
    return_features: Sequence[str] = (),
    stop_at: str | None = None,
):
    """ws -> image (and {block: features}); with `stop_at`, only that block's features."""
    if ws.ndim != 3 or ws.shape[1] != net.num_ws:
        raise ValueError(f"ws must have shape [N, {net.num_ws}, w_dim], got {list(ws.shape)}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    ws = ws.float()
    feats: dict[str, torch.Tensor] = {}
    x = img = None
    i = 0
    for name in net.block_names():
        block = getattr(net, name)
        x, img = synthesis_block(block, x, img, ws[:, i : i + block.num_conv + 1], noise_mode, rgb=name != stop_at)
        i += block.num_conv
        if name == stop_at:
            return x
        if name in return_features:
            feats[name] = x
    if stop_at is not None:
        raise ValueError(f"unknown synthesis block {stop_at!r}; have {net.block_names()}")
    return (img, feats) if return_features else img


class PlainSynthesis(nn.Module):
    """Drop-in for `SynthesisNetwork` that runs `synthesis` above on the same parameters."""

    def __init__(self, net: SynthesisNetwork) -> None:
        super().__init__()
        self.net = net
        self.num_ws = net.num_ws
        self.img_resolution = net.img_resolution
        self.block_resolutions = net.block_resolutions

    def block_names(self) -> list[str]:
        return self.net.block_names()

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False, return_features: Sequence[str] = ()
    ):
        unknown = set(return_features) - set(self.block_names())
        if unknown:
            raise ValueError(f"unknown synthesis blocks {sorted(unknown)}; have {self.block_names()}")
        return synthesis(self.net, ws, noise_mode, return_features)

    def features(
        self, ws: torch.Tensor, block: str, noise_mode: str = "const", force_fp32: bool = False
    ) -> torch.Tensor:
        return synthesis(self.net, ws, noise_mode, stop_at=block)


class PlainMapping(nn.Module):
    """Drop-in for `MappingNetwork` that runs `mapping` above on the same parameters."""

    def __init__(self, net: MappingNetwork) -> None:
        super().__init__()
        self.net = net
        self.num_ws = net.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.net.w_avg

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        return mapping(self.net, z, truncation_psi, truncation_cutoff)


class PlainGenerator(nn.Module):
    """A `Generator` look-alike whose mapping and synthesis run the plain path.

    It shares (does not copy) the wrapped generator's parameters and buffers, so the
    fast and plain paths can be compared or timed on exactly the same weights.
    """

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.mapping = PlainMapping(G.mapping)
        self.synthesis = PlainSynthesis(G.synthesis)
        self.config = G.config
        self.z_dim, self.w_dim, self.c_dim = G.z_dim, G.w_dim, 0
        self.img_resolution, self.img_channels, self.num_ws = G.img_resolution, G.img_channels, G.num_ws

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode=noise_mode)
