"""Every StyleGAN2 layout that exists in the world loads; NVIDIA's own files draw NVIDIA's pictures;
training state is skipped but a hostile object hidden in it is still refused before it runs."""

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import CheckpointError
from helpers import NO_SHARED, REFERENCE, run, tiny_generator, write_nvidia_pickle
from layouts import (
    ngc_kwargs,
    write_ngc_pickle,
    write_rosinality_training_checkpoint,
    write_tf_pickle,
)
from weights.checkpoint import load_generator, read_checkpoint
from weights.config import normalise_config
from weights.networks import Generator
from weights.registry import REGISTRY


def _same_output(G1, G2, atol=1e-5):
    z = torch.randn(2, G1.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(G2(z, truncation_psi=0.7), G1(z, truncation_psi=0.7), rtol=0, atol=atol)


# NVIDIA's own files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ngc_layout_small", "tf_layout_small"])
def test_reference_files_draw_nvidias_pictures(name, home, tmp_path, capsys):
    """`generate` on files written by NVIDIA's code draws the PNGs that code drew, within one 8-bit level."""
    if not (REFERENCE / f"{name}.pkl").is_file():
        pytest.skip(NO_SHARED)
    for seed in (0, 1):
        png = tmp_path / f"{name}_{seed}.png"
        code, _, err = run(
            [
                "--quiet",
                "--device",
                "cpu",
                "generate",
                "--model",
                str(REFERENCE / f"{name}.pkl"),
                "--seed",
                str(seed),
                "-o",
                str(png),
            ],
            capsys,
        )
        assert code == 0, err
        got = np.asarray(Image.open(png)).astype(int)
        want = np.asarray(Image.open(REFERENCE / f"{name}_seed{seed}.png").convert("RGB")).astype(int)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1, f"{name} seed {seed}: max difference {np.abs(got - want).max()}"


@pytest.mark.skipif(
    not (REFERENCE / "tf_layout_small.pkl").is_file() or not (REFERENCE / "ngc_layout_small.pkl").is_file(),
    reason=NO_SHARED,
)
def test_reference_files_inspect(capsys):
    code, out, _ = run(["weights", "inspect", str(REFERENCE / "ngc_layout_small.pkl")], capsys)
    assert code == 0
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["layout"].strip().startswith("ngc:") and "networks_stylegan2" in rows["layout"]
    assert rows["resolution"].strip() == "64" and rows["z_dim / w_dim"].strip() == "64 / 64"
    assert rows["channel base / max"].strip() == "1,024 / 32" and rows["mapping layers"].strip() == "2"
    for net in (
        "G_ema (Generator, used)",
        "D (Discriminator, skipped)",
        "augment_pipe (AugmentPipe, skipped)",
        "training_set_kwargs",
    ):
        assert net in rows["networks"]
    assert rows["status"].strip() == "loads"
    code, out, _ = run(["weights", "inspect", str(REFERENCE / "tf_layout_small.pkl")], capsys)
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["layout"].strip().startswith("tensorflow:") and rows["resolution"].strip() == "32"
    assert rows["channel base / max"].strip() == "512 / 32" and "Gs (TensorFlow Gs, used)" in rows["networks"]


# layouts written here ---------------------------------------------------------------------------
def test_ngc_layout_with_training_state_loads(tmp_path):
    G = tiny_generator(res=32)
    path = write_ngc_pickle(tmp_path / "stylegan2-ffhq-32x32.pkl", G)
    ckpt = read_checkpoint(path)
    assert ckpt.layout == "ngc" and ckpt.refusal is None
    assert "channel_base" in ckpt.kwargs and "synthesis_kwargs" not in ckpt.kwargs  # really flat
    assert [n.split(" ")[0] for n in ckpt.networks] == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    _same_output(G, load_generator(path), atol=0)


def test_numpy_data_in_training_state_is_skipped(tmp_path):
    G = tiny_generator(res=16)
    tsk = dict(resolution=np.int64(16), mean=np.arange(3, dtype=np.float32), random_seed=np.int32(0))
    path = write_ngc_pickle(tmp_path / "n.pkl", G, training_set_kwargs=tsk)
    assert b"_reconstruct" in path.read_bytes()  # a real numpy array, not only scalars
    _same_output(G, load_generator(path), atol=0)


def test_tf_layout_loads_and_matches(tmp_path):
    G = tiny_generator(res=32)
    path = write_tf_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", G)
    data = path.read_bytes()
    assert data[:2] == b"\x80\x03" and b"cnumpy.core.multiarray\n_reconstruct" in data
    assert b"cdnnlib.tflib.network\nNetwork" in data
    ckpt = read_checkpoint(path)
    assert ckpt.layout == "tensorflow" and ckpt.refusal is None
    # TF StyleGAN2 has no conv clamp: the same weights without it are what the file holds
    assert ckpt.config == dataclasses.replace(G.config, conv_clamp=None)
    unclamped = Generator.from_config(ckpt.config)
    unclamped.load_state_dict(G.state_dict())
    _same_output(unclamped.eval(), load_generator(path))


def test_tf_layout_missing_or_foreign_variables_are_named(tmp_path):
    G = tiny_generator(res=16)
    bad_kw = dict(
        num_channels=3,
        resolution=16,
        latent_size=32,
        dlatent_size=32,
        mapping_layers=2,
        fmap_base=64,
        fmap_max=32,
        label_size=0,
        something_new=3,
    )
    with pytest.raises(CheckpointError, match="something_new"):
        load_generator(write_tf_pickle(tmp_path / "a.pkl", G, static_kwargs=bad_kw))
    bad_kw = dict(bad_kw, something_new=None, label_size=10)
    del bad_kw["something_new"]
    with pytest.raises(CheckpointError, match="c_dim=10"):
        load_generator(write_tf_pickle(tmp_path / "b.pkl", G, static_kwargs=bad_kw))


def test_rosinality_training_checkpoint_loads(tmp_path):
    G = tiny_generator(res=32)
    path = write_rosinality_training_checkpoint(tmp_path / "550000.pt", G)
    ckpt = read_checkpoint(path)
    assert ckpt.layout == "rosinality" and "g_ema (used)" in ckpt.networks and "args (skipped)" in ckpt.networks
    _same_output(G, load_generator(path))


def test_stylegan2_ada_and_safetensors_still_load(tmp_path):
    from weights.checkpoint import save_generator

    G = tiny_generator(res=32)
    assert read_checkpoint(write_nvidia_pickle(tmp_path / "ffhq.pkl", G)).layout == "stylegan2-ada"
    _same_output(G, load_generator(tmp_path / "ffhq.pkl"), atol=0)
    save_generator(G, tmp_path / "g.safetensors")
    assert read_checkpoint(tmp_path / "g.safetensors").layout == "photodrag"
    _same_output(G, load_generator(tmp_path / "g.safetensors"), atol=0)


# the normalising step ------------------------------------------------------------------------------
def test_flat_and_nested_kwargs_give_the_same_config():
    G = tiny_generator(res=32)
    flat = ngc_kwargs(G)
    nested = G.init_kwargs
    assert normalise_config(flat, "f.pkl") == normalise_config(nested, "f.pkl") == G.config
    with_numpy = dict(flat, img_resolution=np.int64(32), channel_base=np.int32(256))
    assert normalise_config(with_numpy, "f.pkl") == G.config


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(architecture="resnet"), "architecture='resnet'"),
        (dict(c_dim=10), "c_dim=10"),
        (dict(use_noise=False), "use_noise=False"),
        (dict(num_critical=2, conv_kernel=3), "networks_stylegan3"),
        (dict(mapping_kwargs={"num_layers": 2, "embed_features": 7}), "embed_features=7"),
        (dict(mystery_option=1), "mystery_option"),
    ],
)
def test_options_that_change_the_network_are_refused_with_one_line(tmp_path, change, named):
    G = tiny_generator(res=16)
    path = write_ngc_pickle(tmp_path / "odd.pkl", G, kwargs=ngc_kwargs(G, **change), with_training_state=False)
    with pytest.raises(CheckpointError) as exc:
        load_generator(path)
    msg = str(exc.value)
    assert named in msg and str(path) in msg and "\n" not in msg


def test_harmless_switches_are_ignored(tmp_path):
    G = tiny_generator(res=16)
    kw = ngc_kwargs(
        G,
        fused_modconv_default=True,
        fp16_channels_last=True,
        architecture="skip",
        mapping_kwargs={"num_layers": 2, "w_avg_beta": 0.995, "activation": "lrelu"},
    )
    _same_output(G, load_generator(write_ngc_pickle(tmp_path / "ok.pkl", G, kwargs=kw)), atol=0)


def test_stylegan3_is_named_by_inspect(tmp_path, capsys):
    G = tiny_generator(res=16)
    path = write_ngc_pickle(tmp_path / "stylegan3-t-ffhq.pkl", G, kwargs=ngc_kwargs(G, magnitude_ema_beta=0.999))
    code, out, _ = run(["weights", "inspect", str(path)], capsys)
    assert code == 0
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["layout"].strip().startswith("stylegan3:")
    assert "refused" in rows["status"] and "magnitude_ema_beta" in rows["status"]
    assert rows["resolution"].strip() == "16"


# hostile objects in training state -------------------------------------------------------------------
class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_ngc_in_training_set(path, marker):
    tsk = dict(path="ffhq.zip", resolution=np.int64(16), hook=_Hostile(marker))
    return write_ngc_pickle(path, tiny_generator(res=16), training_set_kwargs=tsk)


def _hostile_ngc_in_augment_pipe(path, marker):
    return write_ngc_pickle(
        path, tiny_generator(res=16), augment_buffers={"p": torch.zeros([]), "Hz_geom": _Hostile(marker)}
    )


def _hostile_tf_state(path, marker):
    return write_tf_pickle(path, tiny_generator(res=16), extra_state={"static_kwargs": {"x": _Hostile(marker)}})


def _hostile_tf_variable(path, marker):
    return write_tf_pickle(path, tiny_generator(res=16), extra_state={"variables": [("w", _Hostile(marker))]})


@pytest.mark.parametrize(
    "write", [_hostile_ngc_in_training_set, _hostile_ngc_in_augment_pipe, _hostile_tf_state, _hostile_tf_variable]
)
@pytest.mark.parametrize("command", ["generate", "inspect", "import"])
def test_hostile_object_in_training_state_is_refused_and_runs_nothing(home, tmp_path, capsys, write, command):
    marker = tmp_path / "pwned"
    path = write(tmp_path / "evil.pkl", marker)
    out_png = tmp_path / "o.png"
    argv = {
        "generate": ["--device", "cpu", "generate", "--model", str(path), "-o", str(out_png)],
        "inspect": ["weights", "inspect", str(path)],
        "import": ["weights", "import", "ffhq-256", str(path)],
    }[command]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "refusing to load" in err and "posix.system" in err
    assert out == ""
    assert not marker.exists() and not out_png.exists()
    assert not (home / "weights" / REGISTRY["ffhq-256"].filename).exists()


def test_unknown_class_in_a_tf_pickle_is_refused(tmp_path):
    """Only the Network stub and numpy's rebuild functions are allowed in a TF pickle, not torch's."""
    G = tiny_generator(res=16)
    path = write_tf_pickle(tmp_path / "x.pkl", G, extra_state={"static_kwargs": {"t": torch.zeros(2)}})
    with pytest.raises(CheckpointError, match="refusing to load: the pickle asks for torch"):
        load_generator(path)


def test_no_generator_in_a_tf_tuple_or_dict_is_one_line(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(({"a": 1}, 2, 3), protocol=3))
    with pytest.raises(CheckpointError, match="no G_ema|not an NVIDIA"):
        load_generator(path)


# full-size configurations through import and inspect ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name, channel_base", [("ffhq-256", 16384), ("ffhq-512", 32768)])
def test_full_size_ngc_config_imports_and_inspects(home, tmp_path, capsys, name, channel_base):
    entry = REGISTRY[name]
    res = entry.resolution
    torch.manual_seed(0)
    G = Generator(
        z_dim=512,
        w_dim=512,
        img_resolution=res,
        mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=512, num_fp16_res=4, conv_clamp=256),
    )
    path = write_ngc_pickle(tmp_path / entry.filename, G, with_training_state=False)
    code, out, err = run(["weights", "inspect", str(path)], capsys)
    assert code == 0, err
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["layout"].strip().startswith("ngc:") and rows["resolution"].strip() == str(res)
    assert rows["z_dim / w_dim"].strip() == "512 / 512" and rows["mapping layers"].strip() == "8"
    assert rows["channel base / max"].strip() == f"{channel_base:,} / 512"
    assert rows["fp16 res / conv clamp"].strip() == "4 / 256"
    n_params = sum(p.numel() for p in G.parameters())
    assert rows["parameters"].strip() == f"{n_params:,}"
    code, out, err = run(["weights", "import", name, str(path)], capsys)
    assert code == 0, err
    assert out.strip() == str(home / "weights" / entry.filename)
    code, out, _ = run(["weights", "verify", name], capsys)
    assert code == 0 and out.split()[1] == "ok"
    other = "ffhq-512" if name == "ffhq-256" else "ffhq-256"
    code, _, err = run(["weights", "import", other, str(path)], capsys)
    assert code == 2 and f"{res}px generator" in err and "differs: resolution" in err


def test_import_names_a_w_size_mismatch(home, tmp_path, capsys):
    G = Generator(
        z_dim=64,
        w_dim=64,
        img_resolution=256,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=1024, channel_max=16),
    )
    path = write_ngc_pickle(tmp_path / "small.pkl", G, with_training_state=False)
    code, _, err = run(["weights", "import", "ffhq-256", str(path)], capsys)
    assert code == 2 and "differs: w_dim 64 (needs 512)" in err and "resolution" not in err.split("differs")[1]
    assert len(err.strip().splitlines()) == 1
