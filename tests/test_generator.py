"""The generator computes what NVIDIA's reference computes, with NVIDIA's names and shapes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from common.errors import CheckpointError
from helpers import NO_SHARED, REFERENCE, tiny_generator
from weights.checkpoint import load_generator, save_generator
from weights.networks import Generator, GeneratorConfig, to_uint8, z_from_seed

TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_dir():
        pytest.skip(NO_SHARED)
    path = REFERENCE / "tiny_G_state_dict.safetensors"
    with safe_open(str(path), "pt") as fh:
        kwargs = json.loads(fh.metadata()["init_kwargs"])
    G = Generator(**kwargs).eval()
    G.load_state_dict(load_file(str(path)), strict=True)
    return G, load_file(str(REFERENCE / "tiny_G_golden_io.safetensors"))


def test_mapping_matches_reference(reference):
    G, io = reference
    with torch.no_grad():
        assert (G.mapping(io["z"]) - io["ws"]).abs().max() < TOL
        assert (G.mapping(io["z"], truncation_psi=0.7) - io["ws_trunc07"]).abs().max() < TOL


@pytest.mark.parametrize(
    "ws_key,img_key,noise_mode",
    [
        ("ws", "img_const", "const"),
        ("ws_trunc07", "img_trunc07_const", "const"),
        ("ws", "img_nonoise", "none"),
    ],
)
def test_synthesis_matches_reference(reference, ws_key, img_key, noise_mode):
    G, io = reference
    with torch.no_grad():
        img = G.synthesis(io[ws_key], noise_mode=noise_mode)
    assert img.shape == io[img_key].shape
    assert (img - io[img_key]).abs().max() < TOL


@pytest.mark.parametrize("batch_one", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_every_execution_path_matches_reference(reference, batch_one, grad):
    """Batch 1 folds styles into the weights; d/dw mode scales the input instead: all must agree."""
    G, io = reference
    for i in range(2) if batch_one else [slice(None)]:
        sel = slice(i, i + 1) if batch_one else i
        ws = io["ws"][sel].clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            img = G.synthesis(ws, noise_mode="const")
        assert (img.detach() - io["img_const"][sel]).abs().max() < TOL


def test_conv_clamp_is_active_in_reference(reference):
    """The reference uses conv_clamp=2: without the clamp the output must differ (so the test sees it)."""
    G, io = reference
    for m in G.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = None
    try:
        with torch.no_grad():
            img = G.synthesis(io["ws"], noise_mode="const")
        assert (img - io["img_const"]).abs().max() > 1e-2
    finally:
        for m in G.modules():
            if hasattr(m, "conv_clamp"):
                m.conv_clamp = 2


def test_full_forward_and_truncation_cutoff(reference):
    G, io = reference
    with torch.no_grad():
        assert (G(io["z"], noise_mode="const") - io["img_const"]).abs().max() < TOL
        ws = G.mapping(io["z"], truncation_psi=0.5, truncation_cutoff=4)
    full = G.mapping(io["z"])
    torch.testing.assert_close(ws[:, 4:], full[:, 4:])
    torch.testing.assert_close(ws[:, :4], G.mapping.w_avg.lerp(full[:, :4], 0.5))


@pytest.mark.parametrize("res", [256, 512, 1024])
def test_real_ffhq_configs_have_nvidia_keys_and_shapes(res):
    path = REFERENCE / f"stylegan2_ffhq{res}_G_shapes.json"
    if not path.exists():
        pytest.skip(NO_SHARED)
    ref = json.loads(path.read_text())
    with torch.device("meta"):
        G = Generator(**ref["init_kwargs"])
    got = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert got == ref["state_dict_shapes"]
    assert G.num_ws == ref["num_ws"]


def test_features_and_early_stop_agree():
    G = tiny_generator(res=32)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.no_grad():
        img, feats = G.synthesis(ws, return_features=["b16", "b32"])
        only = G.synthesis.features(ws, "b16")
    assert img.shape == (2, 3, 32, 32)
    assert feats["b16"].shape == (2, G.config.channels(16), 16, 16)
    torch.testing.assert_close(only, feats["b16"])
    with pytest.raises(ValueError, match="unknown synthesis block"):
        G.synthesis.features(ws, "b64")


def test_gradient_reaches_w_and_noise_modes_differ():
    G = tiny_generator(res=16)
    ws = G.mapping(torch.randn(1, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    with torch.no_grad():
        a = G.synthesis(ws, noise_mode="const")
        b = G.synthesis(ws, noise_mode="const")
        c = G.synthesis(ws, noise_mode="none")
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_bad_ws_shape_is_clear():
    G = tiny_generator(res=16)
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 6"):
        G.synthesis(torch.zeros(1, 3, G.w_dim))


def test_config_round_trip_and_rejects_unsupported():
    cfg = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, channel_base=1024, channel_max=64)
    assert GeneratorConfig.from_init_kwargs(cfg.to_init_kwargs()) == cfg
    with pytest.raises(CheckpointError, match="conditional"):  # the one parser: weights.config.normalise_config
        GeneratorConfig.from_init_kwargs(dict(cfg.to_init_kwargs(), c_dim=10))
    with pytest.raises(CheckpointError, match="skip"):
        GeneratorConfig.from_init_kwargs(dict(cfg.to_init_kwargs(), synthesis_kwargs=dict(architecture="resnet")))
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=48)


def test_safetensors_round_trip(tmp_path):
    G = tiny_generator(res=32)
    z = torch.randn(1, G.z_dim)
    save_generator(G, tmp_path / "g.safetensors")
    G2 = load_generator(tmp_path / "g.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(G2(z), G(z), rtol=0, atol=0)
    save_generator(G, tmp_path / "g16.safetensors", fp16=True)
    assert (tmp_path / "g16.safetensors").stat().st_size < 0.6 * (tmp_path / "g.safetensors").stat().st_size
    with torch.no_grad():
        assert (load_generator(tmp_path / "g16.safetensors")(z) - G(z)).abs().max() < 0.05


def test_seed_and_uint8_follow_nvidia_generate():
    """z_from_seed draws NVIDIA's z: the small NGC-layout file renders NVIDIA's own picture of each seed."""
    if not (REFERENCE / "ngc_layout_small.pkl").is_file():
        pytest.skip(NO_SHARED)
    G = load_generator(REFERENCE / "ngc_layout_small.pkl")
    for seed in (0, 1):
        with torch.no_grad():
            got = to_uint8(G(z_from_seed(seed, G.z_dim), noise_mode="const")).astype(int)[0]
        want = np.asarray(Image.open(REFERENCE / f"ngc_layout_small_seed{seed}.png").convert("RGB")).astype(int)
        assert np.abs(got - want).max() <= 1, f"seed {seed}"
    img = torch.tensor([[[[-1.0, 0.0, 1.0, 2.0]]]]).expand(1, 3, 1, 4)
    assert to_uint8(img)[0, 0].tolist() == [[0, 0, 0], [128, 128, 128], [255, 255, 255], [255, 255, 255]]
