"""The command line: weights registry commands, generate, and one-line errors with exit codes."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import no_network, run, tiny_generator, write_nvidia_pickle
from weights.networks import Generator, to_uint8, z_from_seed
from weights.registry import REGISTRY


def test_help_lists_every_command(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for cmd in ("generate", "weights"):
        assert cmd in out
    code, out, _ = run(["weights", "--help"], capsys)
    for sub in ("list", "fetch", "import", "verify", "path", "inspect"):
        assert sub in out


def test_list_on_empty_home(home, capsys):
    code, out, _ = run(["weights", "list"], capsys)
    assert code == 0
    assert str(home / "weights") in out
    for name in REGISTRY:
        assert name in out
    line = next(l for l in out.splitlines() if l.startswith("ffhq-256 "))
    assert "missing" in line
    assert "nvidia" in out.lower() and "licence" in out


def test_missing_weights_offline_is_one_clear_line(home, tmp_path, capsys):
    out_png = tmp_path / "x.png"
    code, _, err = run(["generate", "--model", "ffhq-256", "-o", str(out_png)], capsys, opener=no_network)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    entry = REGISTRY["ffhq-256"]
    assert entry.url in err and "weights fetch ffhq-256" in err and str(home / "weights") in err
    assert not out_png.exists()


def test_generate_from_pickle_path_matches_direct_computation(home, tmp_path, capsys):
    G = tiny_generator(res=32)
    pkl = write_nvidia_pickle(tmp_path / "tiny.pkl", G)
    out_png = tmp_path / "sample.png"
    code, out, err = run(
        ["--device", "cpu", "generate", "--model", str(pkl), "--seed", "7", "--trunc", "0.7", "-o", str(out_png)],
        capsys,
    )
    assert code == 0, err
    with torch.no_grad():
        expected = to_uint8(G(z_from_seed(7, G.z_dim), truncation_psi=0.7))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out_png)), expected)


def test_hostile_model_file_exits_2_and_runs_nothing(home, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    code, _, err = run(["generate", "--model", str(evil), "-o", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "refusing to load" in err and "posix.system" in err
    assert not marker.exists() and not (tmp_path / "o.png").exists()


def test_usage_errors(home, tmp_path, capsys):
    code, _, err = run(["weights", "fetch", "no-such"], capsys)
    assert code == 2 and "unknown weights name" in err
    code, _, err = run(["generate", "--model", str(tmp_path / "nope.pkl"), "-o", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "neither a generator name" in err
    code, _, err = run(["generate", "--model", "lpips-alex", "-o", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "not a generator" in err
    if not torch.cuda.is_available():
        code, _, err = run(["--device", "cuda", "generate", "-o", str(tmp_path / "o.png")], capsys)
        assert code == 2 and "no CUDA" in err


def test_import_refuses_a_generator_of_the_wrong_resolution(home, tmp_path, capsys):
    pkl = write_nvidia_pickle(tmp_path / "tiny.pkl", tiny_generator(res=32))
    code, _, err = run(["weights", "import", "ffhq-256", str(pkl)], capsys)
    assert code == 2 and "32px generator" in err
    assert not (home / "weights" / REGISTRY["ffhq-256"].filename).exists()


def test_import_refuses_a_non_backbone(home, tmp_path, capsys):
    path = tmp_path / "x.pth"
    torch.save({"features.0.weight": torch.zeros(2)}, path)
    code, _, err = run(["weights", "import", "lpips-alex", str(path)], capsys)
    assert code == 2 and "not a torchvision alexnet" in err


@pytest.mark.slow
def test_import_real_architecture_generator_then_generate_and_verify(home, tmp_path, capsys):
    """A random-weight generator with the real ffhq-256 config goes through import, list, generate, verify."""
    torch.manual_seed(0)
    G = Generator(**REGISTRY["ffhq-256"].init_kwargs).eval()
    pkl = write_nvidia_pickle(tmp_path / "mine.pkl", G)
    code, out, err = run(["weights", "import", "ffhq-256", str(pkl)], capsys)
    assert code == 0, err
    stored = home / "weights" / REGISTRY["ffhq-256"].filename
    assert out.strip() == str(stored) and stored.read_bytes() == pkl.read_bytes()
    code, out, _ = run(["weights", "list"], capsys)
    assert "present" in next(l for l in out.splitlines() if l.startswith("ffhq-256 "))
    png = tmp_path / "s.png"
    code, _, err = run(
        ["--quiet", "--device", "cpu", "generate", "--model", "ffhq-256", "--seed", "3", "-o", str(png)], capsys
    )
    assert code == 0, err
    with torch.no_grad():
        expected = to_uint8(G(z_from_seed(3, 512)))[0]
    got = np.asarray(Image.open(png)).astype(int)
    assert got.shape == (256, 256, 3)
    assert np.abs(got - expected).max() <= 1  # float32 reassociation may flip a rounding
    code, out, _ = run(["weights", "verify", "ffhq-256"], capsys)
    assert code == 0 and "ok" in out
    with open(stored, "r+b") as fh:  # corrupt one byte
        fh.seek(1000)
        b = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([b[0] ^ 0xFF]))
    code, out, err = run(["weights", "verify", "ffhq-256"], capsys)
    assert code == 1 and "hash mismatch" in out


@pytest.mark.slow
def test_backbone_with_wrong_hash_needs_allow_unverified(home, tmp_path, capsys):
    import torchvision

    path = tmp_path / "alex.pth"
    torch.save(torchvision.models.alexnet().state_dict(), path)
    code, _, err = run(["weights", "import", "lpips-alex", str(path)], capsys)
    assert code == 2 and "--allow-unverified" in err
    code, _, err = run(["weights", "import", "lpips-alex", str(path), "--allow-unverified"], capsys)
    assert code == 0, err
    code, out, _ = run(["weights", "list"], capsys)
    assert "UNVERIFIED" in next(l for l in out.splitlines() if l.startswith("lpips-alex "))
    code, out, _ = run(["weights", "path", "lpips-alex"], capsys)
    assert out.strip() == str(home / "weights" / "alexnet-owt-7be5be79.pth")


def test_dlib_models_come_from_the_package(home, capsys):
    code, out, _ = run(["weights", "path", "dlib-landmarks-68"], capsys)
    assert code == 0 and "face_recognition_models" in out and os.path.isfile(out.strip())
    code, out, _ = run(["weights", "verify", "dlib-landmarks-68"], capsys)
    assert code == 0 and out.split()[1] == "ok"
