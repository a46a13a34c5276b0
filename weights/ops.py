"""Low-level StyleGAN2 operations in plain PyTorch (no compiled extensions).

These reproduce the arithmetic of NVIDIA's `bias_act`, `upfirdn2d` and
`modulated_conv2d` for the cases the StyleGAN2 generator uses, so a checkpoint
trained with the official code gives the same images here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """2-D FIR filter as the outer product of `taps`, normalised to sum 1."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(k, k)
    return f / f.sum()


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float = 1.0, clamp: float | None = None
) -> torch.Tensor:
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

    StyleGAN's filters are outer products of symmetric 1-D taps (`setup_filter`), so
    correlation and convolution agree and the filter is applied as two 1-D passes
    (rows f.sum(0) / f.sum(), columns f.sum(1)), half the work of a 4x4 depthwise conv.
    """
    c = x.shape[1]
    x = F.pad(x, list(pad))
    f = (f * gain).to(x.dtype)
    col, row = f.sum(dim=1), f.sum(dim=0) / f.sum()
    x = F.conv2d(x, row.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, col.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling with the FIR filter (gain 4), as `upfirdn2d.upsample2d` with its default padding.

    Zero insertion, padding (2, 1) and the 4-tap filter equal one depthwise transposed
    convolution with stride 2 and padding 1 (for the symmetric filters StyleGAN uses).
    """
    c = x.shape[1]
    k = (f * 4).to(x.dtype).reshape(1, 1, *f.shape).expand(c, 1, -1, -1)
    return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)


def demod_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1/||w * s|| per sample and output channel, without building the modulated weights.

    sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2
    """
    wsq = weight.square().sum(dim=[2, 3])  # [out, in]
    return (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [n, out]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
    fold_styles: bool | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution followed by noise, bias, activation, gain and clamp.

    Computes exactly what NVIDIA's `modulated_conv2d` + `bias_act` compute, arranged for
    few passes over memory:
    - demodulation and the activation gain become one per-channel scale, applied together
      with the noise in a single `addcmul` (lrelu(g*y) = g*lrelu(y) for g > 0);
    - with batch 1 the bias rides inside the convolution (as bias / scale);
    - without gradients (batch 1) the styles scale the weights, the cheapest forward;
      whenever a gradient flows (projection and dragging: d/dw with frozen weights; PTI
      tuning: d/dweights) they scale the input instead (NVIDIA's fused_modconv=False
      form).  With frozen weights that skips the weight-gradient convolution entirely;
      for tuning it measured about 5-9% faster than folding (benchmarks/ablation.py).
      `fold_styles` overrides the choice (benchmarks use it to measure both forms).
    """
    out_c, in_c, kh, kw = weight.shape
    n = x.shape[0]
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise to keep fp16 activations in range (as the original does).
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    scale = demod_coefficients(weight, styles) * gain if demodulate else None  # [n, out]
    if up:
        scale = (scale if scale is not None else styles.new_full([n, out_c], gain)) * 4.0
    if fold_styles is None:
        fold_styles = n == 1 and not (weight.requires_grad or styles.requires_grad)
    elif fold_styles and n != 1:
        raise ValueError("fold_styles=True needs batch 1")
    if fold_styles:
        w = (weight * styles.reshape(1, -1, 1, 1)).to(x.dtype)
    else:
        w = weight.to(x.dtype)
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    conv_bias = None
    if bias is not None and n == 1 and not up:
        conv_bias = bias if scale is None else bias * gain / scale[0]
        bias = None
    if up:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        # NVIDIA's conv2d_resample(up=2, padding=k//2): pad the transposed output, then FIR.
        fh = resample_filter.shape[0]
        p0 = (fh + 1) // 2 + kw // 2 - (kw - 1)
        p1 = (fh - 2) // 2 + kw // 2 - (kw - 2)
        x = fir_filter(x, resample_filter, (p0, p1, p0, p1))
    else:
        x = F.conv2d(x, w, bias=None if conv_bias is None else conv_bias.to(x.dtype), padding=kh // 2)
    if scale is not None:
        s = scale.to(x.dtype).reshape(n, -1, 1, 1)
        x = torch.addcmul((noise * gain).to(x.dtype), x, s) if noise is not None else x * s
    elif noise is not None:
        x = x + (noise * gain).to(x.dtype)
    elif gain != 1:
        x = x * gain
    if bias is not None:
        x = x.add_((bias * gain).to(x.dtype).reshape(1, -1, 1, 1))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA, inplace=True)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if clamp is not None:
        x = x.clamp(-clamp, clamp) if torch.is_grad_enabled() else x.clamp_(-clamp, clamp)
    return x
