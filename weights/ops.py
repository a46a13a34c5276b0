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

from weights import wgrad

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

    StyleGAN's filters are symmetric, so correlation and convolution agree. The filter is one
    depthwise convolution, and the symmetric part of the padding is the convolution's own, so
    symmetric padding (the up-sampling layers' and their backward's) makes no padded copy of the
    map: at 64 x 513^2 (AMD EPYC, 2 threads, channels-last) 0.4x the time of padding with F.pad
    and then two 1-D passes.
    """
    c = x.shape[1]
    left, right, top, bottom = pad
    pw, ph = max(0, min(left, right)), max(0, min(top, bottom))
    rest = (left - pw, right - pw, top - ph, bottom - ph)
    if any(rest):
        x = F.pad(x, list(rest))
    k = (f * gain).to(x.dtype)
    return F.conv2d(x, k.reshape(1, 1, *k.shape).expand(c, 1, -1, -1), padding=(ph, pw), groups=c)


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


def _fir_pads(filter_size: int, kernel: int) -> tuple[int, int]:
    """NVIDIA's conv2d_resample(up=2, padding=k//2): padding of the transposed output before the FIR."""
    p0 = (filter_size + 1) // 2 + kernel // 2 - (kernel - 1)
    p1 = (filter_size - 2) // 2 + kernel // 2 - (kernel - 2)
    return p0, p1


def _fir_backward(g: torch.Tensor, f: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """Gradient of `fir_filter(x, f, pad)` (gain 1) with respect to x, given the output gradient `g`.

    A valid correlation's input gradient is the full correlation with the flipped filter;
    cropping the forward's padding off that is again `fir_filter` with the flipped filter and
    the complementary padding (taps - 1 - pad), as fast as the forward (oneDNN's depthwise
    grad-input kernels measured 10x slower than that on channels-last maps).
    """
    fh, fw = f.shape
    return fir_filter(g, f.flip([0, 1]), (fw - 1 - pad[0], fw - 1 - pad[1], fh - 1 - pad[2], fh - 1 - pad[3]))


def _pixel_rows(t: torch.Tensor) -> torch.Tensor | None:
    """A batch-1 channels-last map as the [H*W, C] matrix its memory already is (a view), else None."""
    n, c, h, w = t.shape
    if n != 1 or not t.is_contiguous(memory_format=torch.channels_last):
        return None
    return t.permute(0, 2, 3, 1).reshape(h * w, c)


CHUNK_ELEMENTS = 1 << 20  # 4 MiB of float32: one product buffer, reused for every block of rows


def _channel_dot(a: torch.Tensor, b: torch.Tensor, chunk: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Per channel, the sum over batch and pixels of a * b.

    On batch-1 channels-last maps the product is formed a block of pixel rows at a time in one
    small buffer, so no map-sized temporary is allocated (at 512 each was a fresh 64 MiB that the
    kernel faulted in and zeroed: about 2.5x the time of the chunked form, Intel Xeon, 2 threads).
    """
    ra, rb = _pixel_rows(a), _pixel_rows(b)
    if ra is None or rb is None or a.shape != b.shape or a.dtype != b.dtype:
        return (a * b).sum(dim=[0, 2, 3])
    rows = max(1, chunk // ra.shape[1])
    buf = ra.new_empty(min(rows, ra.shape[0]), ra.shape[1])
    acc = ra.new_zeros(ra.shape[1])
    for i in range(0, ra.shape[0], rows):
        j = min(i + rows, ra.shape[0])
        acc += torch.mul(ra[i:j], rb[i:j], out=buf[: j - i]).sum(dim=0)
    return acc


def _noise_dot(g: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per channel, the sum over pixels of g * noise, for one noise map shared by all channels
    ([H, W] or [1, 1, H, W]); on a batch-1 channels-last g one matrix-vector product."""
    rg = _pixel_rows(g)
    if rg is not None and noise.numel() == rg.shape[0]:
        return torch.mv(rg.t(), noise.reshape(-1).to(g.dtype))
    return _channel_dot(g, noise.expand(*g.shape[:1], 1, *g.shape[2:]))


def _conv_args(up: bool, kh: int, kw: int) -> tuple:
    """(stride, padding, dilation, transposed, output_padding, groups) of the layer's convolution."""
    if up:
        return [2, 2], [0, 0], [1, 1], True, [0, 0], 1
    return [1, 1], [kh // 2, kw // 2], [1, 1], False, [0, 0], 1


def _conv_input_grad(gy: torch.Tensor, x: torch.Tensor, wm: torch.Tensor, up: bool) -> torch.Tensor:
    """d/dx of the layer's convolution (`_layer_forward`) for the weights `_modulated` built."""
    kh, kw = wm.shape[2:]
    return torch.ops.aten.convolution_backward(gy, x, wm, None, *_conv_args(up, kh, kw), [True, False, False])[0]


def _as_nchw(t: torch.Tensor) -> torch.Tensor:
    """`t` in NCHW memory.  A batch-1 channels-last map is copied as the 2-D transpose [H*W, C] ->
    [C, H*W], which PyTorch copies with its blocked transpose kernel; `.contiguous()`'s 4-D strided
    copy measured about 5x slower at 64 x 512 x 512 (Intel Xeon, 2 threads)."""
    if t.is_contiguous():
        return t
    rows = _pixel_rows(t)
    return t.contiguous() if rows is None else rows.t().contiguous().view(t.shape)


def _conv_weight_grad(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, up: bool) -> torch.Tensor:
    """d/d(modulated weights) of the layer's convolution, shaped like `weight` [out, in, kh, kw].

    Batch-1 channels-last CPU maps go to `wgrad.conv_weight_grad` (GEMMs on the maps in their own layout);
    others to oneDNN on NCHW copies: its batch-1 weight-gradient kernels measured 4-5x slower on
    channels-last maps than the two copies plus the NCHW kernel.
    """
    if wgrad.applies(gy, x):
        return wgrad.conv_weight_grad(gy, x, weight.shape[2], up)
    shape = [weight.shape[1], weight.shape[0], *weight.shape[2:]] if up else list(weight.shape)
    like = weight.new_empty(shape, dtype=x.dtype)  # only its shape is read
    args = _conv_args(up, *weight.shape[2:])
    gw = torch.ops.aten.convolution_backward(_as_nchw(gy), _as_nchw(x), like, None, *args, [False, True, False])[1]
    return gw.transpose(0, 1) if up else gw


def _modulated(weight: torch.Tensor, outer: torch.Tensor, x: torch.Tensor, up: bool) -> torch.Tensor:
    """weight * outer[o, i] as the convolution takes it ([in, out, k, k] when transposed), in x's
    dtype, written straight into the memory layout the convolution would otherwise copy it to."""
    w, o = (weight.transpose(0, 1), outer.t()) if up else (weight, outer)
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if cl else torch.contiguous_format
    out = torch.empty(w.shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    return torch.mul(w, o.reshape(*o.shape, 1, 1), out=out)


def _layer_forward(x, weight, st, s, noise, bias, gain, clamp, up, f) -> tuple[torch.Tensor, torch.Tensor]:
    """`_FusedLayer`'s forward: one convolution with the fully modulated weights, then, in place,
    the bias (inside the convolution when not up-sampling), noise, leaky ReLU and clamp.
    Returns (output, the modulated weights as the convolution took them)."""
    wm = _modulated(weight, st.reshape(1, -1) * s.reshape(-1, 1), x, up)
    b = None if bias is None else (bias * gain).to(x.dtype)
    if up:
        y = F.conv_transpose2d(x, wm, stride=2)
        p0, p1 = _fir_pads(f.shape[0], weight.shape[3])
        y = fir_filter(y, f, (p0, p1, p0, p1))
        if b is not None:
            y.add_(b.reshape(1, -1, 1, 1))
    else:
        y = F.conv2d(x, wm, bias=b, padding=weight.shape[2] // 2)
    if noise is not None:
        y.add_((noise * gain).to(y.dtype))
    F.leaky_relu_(y, LRELU_ALPHA)
    if clamp is not None:
        y.clamp_(-clamp, clamp)
    return y, wm


def _demodulation(weight: torch.Tensor, st: torch.Tensor, gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_k weight^2 [out, in], s = gain / ||weight * st|| [out]) for one sample's styles `st`."""
    wsq = torch.linalg.vector_norm(weight, dim=(2, 3)).square()
    return wsq, (wsq @ st.square() + 1e-8).rsqrt() * gain


class _FusedLayer(torch.autograd.Function):
    """A demodulated StyleGAN2 layer (batch 1) as one autograd node with a hand-written backward.

        s   = gain / sqrt(sum_{i,k} (weight[o, i, k] st[i])^2 + 1e-8)          (times 4 when up)
        out = clamp(lrelu(conv(x, weight * st[in] * s[out]) (then FIR when up) + gain * (bias + noise)))

    The forward keeps only its inputs, the small per-channel factors and its output (which
    the next layer keeps anyway), not the pre-activation: the backward reads the leaky-ReLU
    slope and the clamp mask off the output, and gets d/ds from
        sum_hw dL/dz * z = sum_hw dL/dout * out        (where not clamped; lrelu(z) = slope * z),
    so with frozen weights (projection, drag) it runs one grad-input convolution and no
    weight-gradient one.  With trainable weights (tuning) the weight gradient and the
    demodulation's share are assembled in two passes over the weights.
    """

    @staticmethod
    def forward(ctx, x, weight, st, noise, bias, gain, clamp, up, f):
        wsq, s = _demodulation(weight, st, gain * (4.0 if up else 1.0))
        out, wm = _layer_forward(x, weight, st, s, noise, bias, gain, clamp, up, f)
        ctx.save_for_backward(x, weight, st, noise, bias, out, f, wsq, s, wm)
        ctx.gain, ctx.clamp, ctx.up = gain, clamp, up
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, st, noise, bias, out, f, wsq, s, wm = ctx.saved_tensors
        gain, clamp, up = ctx.gain, ctx.clamp, ctx.up
        need_x, need_w, need_st, need_noise, need_bias = ctx.needs_input_grad[:5]
        need_gwm = need_w or (need_st and not need_x)
        # d/dstyles from the weight gradient when there is one and it is cheaper than the out-trick
        from_gwm = need_gwm and (not need_x or weight.numel() <= out.numel())
        # the clamp mask, then the leaky-ReLU slope in place (one map-sized buffer, not two)
        h = torch.ops.aten.hardtanh_backward(grad, out, -clamp, clamp) if clamp is not None else grad
        # sum_hw h * out (for d/ds by the out-trick), read before h becomes g
        h_out = _channel_dot(h, out) if (need_w or need_st) and not from_gwm else None
        if h is grad:
            g = torch.ops.aten.leaky_relu_backward(h, out, LRELU_ALPHA, True)
        else:
            g = torch.ops.aten.leaky_relu_backward.grad_input(h, out, LRELU_ALPHA, True, grad_input=h)
        del h  # g (dL/dz) now owns that buffer
        g_sum = g.sum(dim=[0, 2, 3]) if need_bias or (h_out is not None and bias is not None) else None
        outer = st.reshape(1, -1) * s.reshape(-1, 1)  # [out, in]
        gy = g
        if up:
            p0, p1 = _fir_pads(f.shape[0], weight.shape[3])
            gy = _fir_backward(g, f, (p0, p1, p0, p1))
        gx = _conv_input_grad(gy, x, wm, up) if need_x else None
        gwm = _conv_weight_grad(gy, x, weight, up).to(weight.dtype) if need_gwm else None
        d_w = d_st = d_noise = d_bias = None
        if need_w or need_st:
            if from_gwm:
                a = (gwm * weight).sum(dim=[2, 3])  # [out, in]
                d_st, d_s = s @ a, a @ st
            else:
                # s * dL/ds = sum_hw g * (z - gain * (bias + noise)),  sum_hw g * z = sum_hw h * out
                s_ds = h_out.to(s.dtype)
                if bias is not None:
                    s_ds = s_ds - gain * bias * g_sum.to(s.dtype)
                if noise is not None:
                    s_ds = s_ds - gain * _noise_dot(g, noise).to(s.dtype)
                d_s = s_ds / s
                if bool((st.abs() < 1e-20).any()):
                    # the input gradient before the st scaling, which dividing by st cannot recover
                    wm1 = _modulated(weight, s.reshape(-1, 1).expand_as(outer), x, up)
                    d_st = _channel_dot(_conv_input_grad(gy, x, wm1, up), x).to(st.dtype)
                else:
                    d_st = _channel_dot(gx, x).to(st.dtype) / st
            # the demodulation: s = c * q^-1/2 with q[o] = sum_i wsq[o, i] st[i]^2
            dq = d_s * s.pow(3) * (-0.5 / (gain * (4.0 if up else 1.0)) ** 2)
            d_st = d_st + 2 * st * (dq @ wsq)
            if need_w:
                d_w = gwm * outer.reshape(*outer.shape, 1, 1)
                d_w.addcmul_(weight, (2 * dq.reshape(-1, 1) * st.square().reshape(1, -1)).reshape(*outer.shape, 1, 1))
        if need_bias:
            d_bias = gain * g_sum.to(bias.dtype)
        if need_noise:
            d_noise = (gain * g.sum(dim=1, keepdim=True)).sum_to_size(noise.shape).to(noise.dtype)
        return (gx if need_x else None), d_w, d_st, d_noise, d_bias, None, None, None, None


def fused_layer(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Batch-1 demodulated layer + noise, bias, leaky ReLU, gain, clamp as one autograd node (`_FusedLayer`)."""
    if x.shape[0] != 1 or styles.shape[0] != 1:
        raise ValueError("fused_layer needs batch 1")
    if up and resample_filter is None:
        raise ValueError("up-sampling needs the resample filter")
    f = resample_filter if up else weight.new_ones([1, 1])
    args = (x, weight, styles[0], noise, bias, gain, clamp, up, f)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:5]):
        return _FusedLayer.apply(*args)
    with torch.no_grad():
        _, s = _demodulation(weight, styles[0], gain * (4.0 if up else 1.0))
        return _layer_forward(x, weight, styles[0], s, noise, bias, gain, clamp, up, f)[0]


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
    if demodulate and n == 1 and fold_styles is None and x.dtype == torch.float32 and act == "lrelu":
        return fused_layer(
            x, weight, styles, up=up, resample_filter=resample_filter, noise=noise, bias=bias, gain=gain, clamp=clamp
        )
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise to keep fp16 activations in range (as the original does).
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    scale = demod_coefficients(weight, styles) * gain if demodulate else None  # [n, out]
    if up:
        scale = (scale if scale is not None else styles.new_full([n, out_c], gain)) * 4.0
    if fold_styles is None:
        fold_styles = n == 1 and (not demodulate or not (weight.requires_grad or styles.requires_grad))
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
    x = _conv(x, w, conv_bias, up, resample_filter)
    return _epilogue(x, scale, noise, bias, gain, act, clamp)


def _conv(x, w, conv_bias, up: bool, resample_filter) -> torch.Tensor:
    """The (modulated) convolution of `modulated_conv2d`: same-size, or 2x up as NVIDIA resamples."""
    kh, kw = w.shape[2:]
    if not up:
        return F.conv2d(x, w, bias=None if conv_bias is None else conv_bias.to(x.dtype), padding=kh // 2)
    x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    # NVIDIA's conv2d_resample(up=2, padding=k//2): pad the transposed output, then FIR.
    fh = resample_filter.shape[0]
    p0 = (fh + 1) // 2 + kw // 2 - (kw - 1)
    p1 = (fh - 2) // 2 + kw // 2 - (kw - 2)
    return fir_filter(x, resample_filter, (p0, p1, p0, p1))


def _epilogue(x, scale, noise, bias, gain: float, act: str, clamp) -> torch.Tensor:
    """After the convolution: per-channel scale with the noise, bias, activation, clamp."""
    if scale is not None:
        s = scale.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
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
