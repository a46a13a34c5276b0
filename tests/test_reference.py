"""The fast generator path equals the plain reference path (weights/reference.py).

Tolerance: every compared tensor (block features, image, gradients) agrees to within
TOL times the largest magnitude of the plain path's tensor (float32 on CPU; the paths
sum in different orders, so bit-equality is not expected).
"""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from helpers import NO_SHARED, REFERENCE, tiny_generator
from weights.networks import Generator
from weights.ops import modulated_conv2d, setup_filter
from weights.reference import PlainGenerator

TOL = 2e-5


def assert_near(fast: torch.Tensor, plain: torch.Tensor, what: str) -> None:
    assert fast.shape == plain.shape, what
    scale = plain.abs().max().item()
    err = (fast - plain).abs().max().item()
    assert scale > 0, f"{what}: reference is all zeros, the comparison would be empty"
    assert err <= TOL * scale, f"{what}: max |fast - plain| = {err:.3g}, scale {scale:.3g}"


def loss_over_every_block(out, weights):
    """A loss that reaches every resolution: the image plus a random projection of each block's features."""
    img, feats = out
    loss = (img * weights["img"]).sum()
    for name, f in feats.items():
        loss = loss + (f * weights[name]).sum()
    return loss


@pytest.fixture(scope="module")
def pair():
    G = tiny_generator(res=32, seed=3)
    for name, buf in G.synthesis.named_buffers():
        if name.endswith("noise_const"):
            buf.normal_()
    return G, PlainGenerator(G)


def _inputs(G, batch):
    torch.manual_seed(batch)
    ws = G.mapping(torch.randn(batch, G.z_dim), truncation_psi=0.8)
    ws = ws + 0.3 * torch.randn_like(ws)  # a different w per layer, as after projection
    names = G.synthesis.block_names()
    with torch.no_grad():
        img, feats = G.synthesis(ws, return_features=names)
    weights = {"img": torch.randn_like(img), **{n: torch.randn_like(f) for n, f in feats.items()}}
    return ws, names, weights


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_forward_matches_plain_at_every_resolution(pair, batch, noise_mode):
    G, P = pair
    ws, names, _ = _inputs(G, batch)
    with torch.no_grad():
        img_f, feats_f = G.synthesis(ws, noise_mode=noise_mode, return_features=names)
        img_p, feats_p = P.synthesis(ws, noise_mode=noise_mode, return_features=names)
    for name in names:
        assert_near(feats_f[name], feats_p[name], f"features {name}")
    assert_near(img_f, img_p, "image")
    with torch.no_grad():
        assert_near(G.synthesis.features(ws, "b16"), P.synthesis.features(ws, "b16"), "early stop b16")


@pytest.mark.parametrize("batch", [1, 2])
def test_gradient_to_w_matches_plain(pair, batch):
    """Frozen weights, d/dw (projection and drag): the fast path scales activations, not weights."""
    G, P = pair
    G.requires_grad_(False)
    ws, names, weights = _inputs(G, batch)
    grads = {}
    for label, gen in (("fast", G), ("plain", P)):
        w = ws.detach().clone().requires_grad_(True)
        loss_over_every_block(gen.synthesis(w, return_features=names), weights).backward()
        grads[label] = w.grad
    for i in range(G.num_ws):
        assert_near(grads["fast"][:, i], grads["plain"][:, i], f"d/dw[{i}]")


def test_gradient_to_w_and_noise_maps_matches_plain(pair):
    """Projection also optimises the noise maps (buffers that then require grad)."""
    G, P = pair
    ws, names, weights = _inputs(G, 1)
    bufs = [b for n, b in G.synthesis.named_buffers() if n.endswith("noise_const")]
    got = {}
    for label, gen in (("fast", G), ("plain", P)):
        for b in bufs:
            b.requires_grad_(True)
            b.grad = None
        w = ws.detach().clone().requires_grad_(True)
        try:
            loss_over_every_block(gen.synthesis(w, return_features=names), weights).backward()
        finally:
            for b in bufs:
                b.requires_grad_(False)
        got[label] = [w.grad] + [b.grad for b in bufs]
    for i, (f, p) in enumerate(zip(got["fast"], got["plain"])):
        assert_near(f, p, f"gradient {i}")


@pytest.mark.parametrize("batch", [1, 2])
def test_gradient_to_weights_matches_plain(pair, batch):
    """w fixed, d/d(every synthesis parameter) (PTI tuning)."""
    G, P = pair
    ws, names, weights = _inputs(G, batch)
    grads = {}
    G.synthesis.requires_grad_(True)
    try:
        for label, gen in (("fast", G), ("plain", P)):
            G.zero_grad(set_to_none=True)
            loss_over_every_block(gen.synthesis(ws.detach(), return_features=names), weights).backward()
            grads[label] = {n: p.grad.clone() for n, p in G.synthesis.named_parameters()}
    finally:
        G.requires_grad_(False)
        G.zero_grad(set_to_none=True)
    for name, g in grads["plain"].items():
        if name.endswith("noise_strength") and g.abs().max() == 0:
            continue
        assert_near(grads["fast"][name], g, f"d/d {name}")
    assert any(n.startswith("b32.") for n in grads["plain"])  # every resolution was compared


def test_plain_mapping_matches_fast(pair):
    G, P = pair
    z = torch.randn(3, G.z_dim)
    with torch.no_grad():
        assert_near(G.mapping(z), P.mapping(z), "mapping")
        assert_near(
            G.mapping(z, truncation_psi=0.5, truncation_cutoff=2),
            P.mapping(z, truncation_psi=0.5, truncation_cutoff=2),
            "truncated mapping",
        )


def test_plain_path_shares_the_parameters(pair):
    G, P = pair
    fast = dict(G.named_parameters())
    assert {id(p) for p in P.parameters()} == {id(p) for p in fast.values()}
    with pytest.raises(ValueError, match="unknown synthesis block"):
        P.synthesis.features(torch.zeros(1, G.num_ws, G.w_dim), "b64")


def test_plain_path_matches_nvidia_golden_outputs():
    if not REFERENCE.is_dir():
        pytest.skip(NO_SHARED)
    path = REFERENCE / "tiny_G_state_dict.safetensors"
    with safe_open(str(path), "pt") as fh:
        kwargs = json.loads(fh.metadata()["init_kwargs"])
    G = Generator(**kwargs).eval()
    G.load_state_dict(load_file(str(path)), strict=True)
    io = load_file(str(REFERENCE / "tiny_G_golden_io.safetensors"))
    P = PlainGenerator(G)
    with torch.no_grad():
        assert (P.mapping(io["z"]) - io["ws"]).abs().max() < 1e-4
        assert (P.mapping(io["z"], truncation_psi=0.7) - io["ws_trunc07"]).abs().max() < 1e-4
        for ws_key, img_key, noise_mode in (
            ("ws", "img_const", "const"),
            ("ws_trunc07", "img_trunc07_const", "const"),
            ("ws", "img_nonoise", "none"),
        ):
            img = P.synthesis(io[ws_key], noise_mode=noise_mode)
            assert (img - io[img_key]).abs().max() < 1e-4, img_key


@pytest.mark.parametrize("up", [False, True])
def test_both_style_forms_give_the_same_values_and_gradients(up):
    """Styles folded into the weights or scaling the input: same output, d/dx, d/dstyles, d/dweight."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6)
    weight, styles = torch.randn(5, 8, 3, 3), torch.randn(1, 8)
    noise, bias = torch.randn(1, 1, 12 if up else 6, 12 if up else 6), torch.randn(5)
    results = []
    for fold in (True, False):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        out = modulated_conv2d(
            *leaves,
            up=up,
            resample_filter=setup_filter(),
            noise=noise,
            bias=bias,
            act="lrelu",
            gain=2**0.5,
            clamp=1.5,
            fold_styles=fold,
        )
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        results.append([out.detach()] + [t.grad for t in leaves])
    for i, (a, b) in enumerate(zip(*results)):
        assert_near(a, b, f"tensor {i}")
    with pytest.raises(ValueError, match="batch 1"):
        modulated_conv2d(torch.randn(2, 8, 6, 6), weight, torch.randn(2, 8), fold_styles=True)
