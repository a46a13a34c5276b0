"""Low-level StyleGAN2 operations in plain PyTorch (no compiled extensions).

These reproduce the arithmetic of NVIDIA's `bias_act`, `upfirdn2d` and
`modulated_conv2d` for the cases the StyleGAN2 generator uses, so a checkpoint
trained with the official code gives the same images here.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """2-D FIR filter as the outer product of `taps`, normalised to sum 1."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(k, k)
    return f / f.sum()


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], act: str = "linear",
             gain: float = 1.0, clamp: Optional[float] = None) -> torch.Tensor:
    """Add a per-channel bias, apply the activation, scale by `gain`, clamp."""
    if b is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter(x: torch.Tensor, f: torch.Tensor, pad: Sequence[int], gain: float = 1.0) -> torch.Tensor:
    """Pad `x` by (left, right, top, bottom) and filter every channel with `f` * `gain`.

    The filter is symmetric, so correlation and convolution agree.  It is applied
    as two 1-D passes when it is separable (the [1,3,3,1] outer product is), which
    halves the work of a 4x4 depthwise convolution.
    """
    c = x.shape[1]
    x = F.pad(x, list(pad))
    f = (f * gain).to(x.dtype)
    col, row = f.sum(dim=1), f.sum(dim=0) / f.sum()
    if torch.allclose(torch.outer(col, row), f):
        x = F.conv2d(x, row.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, col.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, f.reshape(1, 1, *f.shape).expand(c, 1, -1, -1), groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling: zero insertion then the FIR filter (gain 4), as `upfirdn2d.upsample2d`."""
    n, c, h, w = x.shape
    up = x.new_zeros([n, c, h, 2, w, 2])
    up[:, :, :, 0, :, 0] = x
    up = up.reshape(n, c, 2 * h, 2 * w)
    fh = f.shape[0]
    p0, p1 = (fh + 1) // 2, (fh - 2) // 2
    return fir_filter(up, f, (p0, p1, p0, p1), gain=4.0)


def demod_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1/||w * s|| per sample and output channel, without building the modulated weights.

    sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2
    """
    wsq = weight.square().sum(dim=[2, 3])  # [out, in]
    return (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [n, out]


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: bool = False,
                     resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution, computed with the un-modulated weights.

    Scaling the input channels by the styles and the output channels by the
    demodulation coefficients is exactly equivalent to convolving with the
    per-sample modulated weights (the "non-fused" form of the original).  It keeps
    the convolution weights independent of w, so a backward pass that only needs
    d/dw (projection, dragging) skips the weight-gradient convolution entirely.
    """
    out_c, in_c, kh, kw = weight.shape
    n = x.shape[0]
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise to keep fp16 activations in range (as the original does).
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    dcoefs = demod_coefficients(weight, styles) if demodulate else None
    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    w = weight.to(x.dtype)
    if up:
        # Transposed stride-2 convolution then the FIR filter: NVIDIA's conv2d_resample
        # for up=2 with padding=k//2 reduces to pad 1 on each side after a stride-2
        # transposed convolution without padding (for the 4-tap filter, 3x3 kernel).
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        fh = resample_filter.shape[0]
        p0 = (fh + 2 - 1) // 2 + kw // 2 - (kw - 1)
        p1 = (fh - 2) // 2 + kw // 2 - (kw - 2)
        x = fir_filter(x, resample_filter, (p0, p1, p0, p1), gain=4.0)
    else:
        x = F.conv2d(x, w, padding=kh // 2)
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
