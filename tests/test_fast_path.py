"""The fused layer (weights.ops._FusedLayer) against autograd on the unfused ops.

Each demodulated batch-1 layer of the fast path is one autograd node with a hand-written
backward.  These tests hold it, in float64, to the plain step-by-step ops of
weights/reference.py differentiated by autograd (and to finite differences), for every
combination of gradients the pipeline asks for: d/dx and d/dstyles with frozen weights
(projection, drag), every input (tuning), weights without an input gradient (the 4x4
layer), with the clamp active, both noise shapes and a style channel that is exactly zero.
Float32 generator-level agreement with the plain path is tests/test_reference.py's job;
here one generator with an active clamp is compared too.
"""

import pytest
import torch
from test_reference import assert_near, loss_over_every_block

from helpers import tiny_generator
from weights import reference
from weights.networks import Generator
from weights.ops import LRELU_GAIN, _fir_backward, fir_filter, fused_layer, setup_filter
from weights.reference import PlainGenerator

F64 = dict(dtype=torch.float64)


def unfused(x, weight, styles, up, f, noise, bias, clamp):
    """The same layer from the plain path's separate ops (autograd differentiates these)."""
    y = reference.modulated_conv(x, weight, styles, demodulate=True, up=up, resample_filter=f)
    if noise is not None:
        y = y + noise
    return reference.bias_act(y, bias, lrelu=True, clamp=clamp)


def fused(x, weight, styles, up, f, noise, bias, clamp):
    return fused_layer(
        x, weight, styles, up=up, resample_filter=f, noise=noise, bias=bias, gain=LRELU_GAIN, clamp=clamp
    )


def layer_inputs(up: bool, noise_shape: str, seed: int = 0, size: int = 6):
    torch.manual_seed(seed)
    out_res = 2 * size if up else size
    x = torch.randn(1, 5, size, size, **F64).contiguous(memory_format=torch.channels_last)
    noise = {"map": torch.randn(out_res, out_res, **F64), "batch": torch.randn(1, 1, out_res, out_res, **F64)}
    return {
        "x": x,
        "weight": torch.randn(4, 5, 3, 3, **F64),
        "styles": torch.randn(1, 5, **F64) + 0.5,
        "noise": 0.3 * noise[noise_shape],
        "bias": 0.2 * torch.randn(4, **F64),
    }


GRAD_SETS = {
    "frozen weights": ("x", "styles"),
    "frozen weights, noise": ("x", "styles", "noise"),
    "tuning": ("x", "weight", "styles", "bias", "noise"),
    "first layer": ("weight", "styles", "bias"),
    "styles only": ("styles",),
}


def grads(fn, inputs, wanted, up, clamp):
    leaves = {k: v.clone().requires_grad_(k in wanted) for k, v in inputs.items()}
    f = setup_filter().to(torch.float64)
    out = fn(leaves["x"], leaves["weight"], leaves["styles"], up, f, leaves["noise"], leaves["bias"], clamp)
    probe = torch.linspace(-1, 1, out.numel(), **F64).reshape(out.shape)
    (out * probe).sum().backward()
    return out.detach(), {k: leaves[k].grad for k in wanted}


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("noise_shape", ["map", "batch"])
@pytest.mark.parametrize("grad_set", list(GRAD_SETS))
def test_fused_layer_equals_autograd_on_unfused_ops(up, noise_shape, grad_set):
    inputs = layer_inputs(up, noise_shape)
    # a clamp that cuts part of the output, so its mask is exercised
    clamp = 0.8
    out_f, g_f = grads(fused, inputs, GRAD_SETS[grad_set], up, clamp)
    out_u, g_u = grads(unfused, inputs, GRAD_SETS[grad_set], up, clamp)
    assert 0 < (out_u.abs() == clamp).float().mean() < 0.9, "the clamp should cut some, not all, values"
    torch.testing.assert_close(out_f, out_u, rtol=1e-10, atol=1e-10)
    for k in GRAD_SETS[grad_set]:
        torch.testing.assert_close(g_f[k], g_u[k], rtol=1e-9, atol=1e-10, msg=f"d/d{k}")


@pytest.mark.parametrize("up", [False, True])
def test_fused_layer_passes_gradcheck(up):
    inputs = layer_inputs(up, "batch", seed=1, size=4)
    f = setup_filter().to(torch.float64)
    leaves = [inputs[k].clone().requires_grad_(True) for k in ("x", "weight", "styles", "noise", "bias")]
    for trainable in (True, False):  # every input, then frozen weights (the out-trick for d/ds)
        leaves[1].requires_grad_(trainable)
        leaves[4].requires_grad_(trainable)

        def fn(x, weight, styles, noise, bias):
            return fused(x, weight, styles, up, f, noise, bias, clamp=None)

        assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_zero_style_channel_takes_the_exact_fallback():
    """d/dstyles with frozen weights divides by the style; a style that is exactly 0 must not."""
    inputs = layer_inputs(False, "map")
    inputs["styles"][0, 2] = 0.0
    _, g_f = grads(fused, inputs, ("x", "styles"), False, None)
    _, g_u = grads(unfused, inputs, ("x", "styles"), False, None)
    assert torch.isfinite(g_f["styles"]).all()
    torch.testing.assert_close(g_f["styles"], g_u["styles"], rtol=1e-9, atol=1e-10)


def test_batch_one_layers_run_as_one_autograd_node():
    """CI exercises the fused path: a batch-1 gradient run goes through _FusedLayer, batch 2 does not."""
    G = tiny_generator(res=16)
    for batch, expected in ((1, True), (2, False)):
        ws = G.mapping(torch.randn(batch, G.z_dim)).requires_grad_(True)
        _, feats = G.synthesis(ws, return_features=["b16"])
        assert (type(feats["b16"].grad_fn).__name__ == "_FusedLayerBackward") is expected


def test_fast_path_with_an_active_clamp_matches_plain():
    """A generator whose conv_clamp bites: outputs, d/dw, d/dweights agree with the plain path (float32)."""
    G = tiny_generator(res=16, seed=5)
    kwargs = G.init_kwargs
    kwargs["synthesis_kwargs"]["conv_clamp"] = 0.5
    Gc = Generator(**kwargs)
    Gc.load_state_dict(G.state_dict())
    Gc.eval().requires_grad_(False)
    P = PlainGenerator(Gc)
    torch.manual_seed(0)
    ws = Gc.mapping(torch.randn(1, Gc.z_dim)) + 0.3 * torch.randn(1, Gc.num_ws, Gc.w_dim)
    names = Gc.synthesis.block_names()
    with torch.no_grad():
        img, feats = P.synthesis(ws, return_features=names)
    assert (feats["b16"].abs() == 0.5).any(), "the clamp should be active"
    weights = {"img": torch.randn_like(img), **{n: torch.randn_like(f) for n, f in feats.items()}}
    got = {}
    for label, gen in (("fast", Gc), ("plain", P)):
        Gc.synthesis.requires_grad_(True)
        w = ws.detach().clone().requires_grad_(True)
        out = gen.synthesis(w, return_features=names)
        loss_over_every_block(out, weights).backward()
        got[label] = {"img": out[0].detach(), "w": w.grad, **{n: p.grad for n, p in Gc.synthesis.named_parameters()}}
        Gc.zero_grad(set_to_none=True)
        Gc.synthesis.requires_grad_(False)
    for k, v in got["plain"].items():
        if v.abs().max() > 0:
            assert_near(got["fast"][k], v, k)


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 5, 7, 3), (1, 1, 4, 4), (1, 6, 1, 1)])
def test_nchw_copy_equals_contiguous(shape):
    """The weight gradient's NCHW copy (a 2-D transpose for batch-1 channels-last maps) is `.contiguous()`'s."""
    from weights.ops import _as_nchw

    x = torch.randn(shape)
    assert _as_nchw(x) is x  # already NCHW: no copy
    for t in (x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3)):
        got = _as_nchw(t)
        assert got.is_contiguous() and torch.equal(got, t)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("gy_layout", ["channels_last", "nchw"])
@pytest.mark.parametrize("hw", [(6, 9), (1, 1), (1, 2), (2, 1), (3, 2)])
def test_gemm_weight_grad_equals_convolution_backward(up, k, gy_layout, hw):
    """weights.wgrad's GEMMs give aten's weight gradient (float64, non-square maps, and maps
    narrower or shorter than the kernel, where taps fall off the map or wrap across row ends)."""
    from weights import wgrad

    torch.manual_seed(k)
    x = torch.randn(1, 5, *hw, **F64).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 5, k, k, **F64)
    if up:
        out = torch.nn.functional.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    else:
        out = torch.nn.functional.conv2d(x, weight, padding=k // 2)
    gy = torch.randn(out.shape, **F64)
    if gy_layout == "channels_last":
        gy = gy.contiguous(memory_format=torch.channels_last)
    assert wgrad.applies(gy, x)
    if hw != (1, 1):  # a 1x1 map is NCHW and channels-last at once
        assert not wgrad.applies(gy, x.contiguous())
    w = weight.clone().requires_grad_(True)
    ref_out = (
        torch.nn.functional.conv_transpose2d(x.contiguous(), w.transpose(0, 1), stride=2)
        if up
        else torch.nn.functional.conv2d(x.contiguous(), w, padding=k // 2)
    )
    (ref_out * gy).sum().backward()
    got = wgrad.conv_weight_grad(gy, x, k, up)
    assert got.shape == weight.shape
    torch.testing.assert_close(got, w.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [7, 40, 1 << 20])
def test_channel_dots_in_blocks_equal_the_whole_product(chunk):
    """The backward's per-channel sums over pixels, formed a block of pixel rows at a time (chunk 7:
    one row of 5 channels per block; 40: 8 rows, the last block short), equal the one-shot product."""
    from weights.ops import _channel_dot, _noise_dot

    torch.manual_seed(chunk)
    a, b = (torch.randn(1, 5, 7, 9, **F64).contiguous(memory_format=torch.channels_last) for _ in range(2))
    want = (a * b).sum(dim=[0, 2, 3])
    torch.testing.assert_close(_channel_dot(a, b, chunk=chunk), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_channel_dot(a.contiguous(), b), want, rtol=1e-12, atol=1e-12)  # NCHW: plain
    noise = torch.randn(7, 9, **F64)
    want_noise = (a * noise).sum(dim=[0, 2, 3])
    for nz in (noise, noise.reshape(1, 1, 7, 9)):
        torch.testing.assert_close(_noise_dot(a, nz), want_noise, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(_noise_dot(a.contiguous(), nz), want_noise, rtol=1e-12, atol=1e-12)


def _padded_correlation(x: torch.Tensor, k: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """The oracle for fir_filter: pad (or crop, for negative pads) with F.pad, then sum the taps."""
    xp = torch.nn.functional.pad(x, list(pad))
    kh, kw = k.shape
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    return sum(k[a, b] * xp[:, :, a : a + oh, b : b + ow] for a in range(kh) for b in range(kw))


@pytest.mark.parametrize(
    "pad", [(1, 1, 1, 1), (2, 1, 2, 1), (1, 2, 0, 3), (0, -1, 1, 0), (-1, -1, 2, -1), (0, 0, 0, 0)]
)
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_fir_filter_is_padding_then_correlation(pad, layout):
    """fir_filter folds the symmetric part of the padding into its depthwise convolution and pads or
    crops only the rest: the same as padding first and correlating every channel (float64, a 4x4
    filter that is not symmetric, so a flipped or transposed filter would fail), and its backward
    (_fir_backward) is autograd's gradient of it."""
    torch.manual_seed(sum(pad) + 10)
    x = torch.randn(1, 3, 7, 6, **F64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    f = torch.rand(4, 4, **F64)
    got = fir_filter(x, f, pad, gain=2.5)
    want = _padded_correlation(x, f * 2.5, pad)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    xg = x.clone().requires_grad_(True)
    g = torch.randn(want.shape, **F64)
    (_padded_correlation(xg, f, pad) * g).sum().backward()
    torch.testing.assert_close(_fir_backward(g, f, pad), xg.grad, rtol=1e-12, atol=1e-12)


def test_fir_filter_keeps_the_stylegan_filter_as_before():
    """With StyleGAN's own [1, 3, 3, 1] filter the one 2-D pass equals the two 1-D passes (rows, then
    columns) it replaced, on the up-sampling layer's padding."""
    torch.manual_seed(3)
    x = torch.randn(1, 4, 9, 9, **F64).contiguous(memory_format=torch.channels_last)
    f = setup_filter().double()
    pad = (1, 1, 1, 1)
    xp = torch.nn.functional.pad(x, list(pad))
    col, row = f.sum(dim=1), f.sum(dim=0) / f.sum()
    xp = torch.nn.functional.conv2d(xp, row.reshape(1, 1, 1, -1).expand(4, 1, 1, -1), groups=4)
    two_pass = torch.nn.functional.conv2d(xp, col.reshape(1, 1, -1, 1).expand(4, 1, -1, 1), groups=4) * 4
    torch.testing.assert_close(fir_filter(x, f, pad, gain=4), two_pass, rtol=1e-12, atol=1e-12)
