"""NVIDIA pickles and rosinality .pt files load safely; hostile files run nothing."""

import argparse
import os
import pickle

import pytest
import torch

from common.errors import CheckpointError
from helpers import nvidia_to_rosinality, tiny_generator, write_nvidia_pickle
from weights.checkpoint import detect_format, load_generator
from weights.nvidia_pickle import generator_record


def _same_output(G1, G2):
    z = torch.randn(2, G1.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(G2(z, truncation_psi=0.7), G1(z, truncation_psi=0.7), rtol=0, atol=1e-6)


def test_nvidia_pickle_loads_without_nvidia_code(tmp_path):
    G = tiny_generator(res=32)
    path = write_nvidia_pickle(tmp_path / "net.pkl", G)
    import sys

    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    assert detect_format(path) == "nvidia-pickle"
    rec = generator_record(path.read_bytes())
    assert rec.class_name == "Generator"
    assert rec.init_kwargs()["synthesis_kwargs"]["channel_base"] == 256
    _same_output(G, load_generator(path))


def test_embedded_source_is_never_executed(tmp_path):
    marker = tmp_path / "source-ran"
    src = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\n"
    path = write_nvidia_pickle(tmp_path / "net.pkl", tiny_generator(res=16), module_src=src)
    load_generator(path)
    assert not marker.exists()


class _Hostile:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: _Hostile(os.system, f"touch {m}"),
        lambda m: _Hostile(eval, f"open({str(m)!r}, 'w')"),
        lambda m: _Hostile(exec, f"open({str(m)!r}, 'w')"),
        lambda m: {"G_ema": _Hostile(os.system, f"touch {m}")},
    ],
)
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, make):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(make(marker), protocol=4))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_generator(path)
    assert not marker.exists()


def test_hostile_nested_storage_blob_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Hostile(os.system, f"touch {marker}"))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Hostile(torch.storage._load_from_bytes, blob)}, protocol=4))
    with pytest.raises(CheckpointError, match="refusing"):
        load_generator(path)
    assert not marker.exists()


def test_pickle_without_generator_and_garbage(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"D": 1}, protocol=4))
    with pytest.raises(CheckpointError, match="no G_ema"):
        load_generator(p)
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="not a readable network pickle"):
        load_generator(p)
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_generator(p)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = write_nvidia_pickle(tmp_path / "net.pkl", tiny_generator(res=16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_rosinality_checkpoint_loads(tmp_path):
    G = tiny_generator(res=32)
    sd = G.state_dict()
    rsd = nvidia_to_rosinality(sd, num_mapping=2)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": rsd, "latent_avg": sd["mapping.w_avg"], "args": argparse.Namespace(size=32)}, path)
    assert detect_format(path) == "torch"
    # rosinality files carry no conv_clamp; ours used 256, which these weights never reach
    _same_output(G, load_generator(path))


def test_hostile_torch_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Hostile(os.system, f"touch {marker}")}, path)
    with pytest.raises(CheckpointError, match="asks for posix.system") as exc:
        load_generator(path)
    assert not marker.exists()
    msg = str(exc.value)
    # says what the file is, without torch's advice to retry the unsafe way
    assert "\n" not in msg and "weights_only" not in msg and "can still be loaded" not in msg
    assert "will likely succeed" not in msg and "trust" not in msg


def test_wrong_shapes_are_reported(tmp_path):
    G = tiny_generator(res=32)
    rsd = nvidia_to_rosinality(G.state_dict(), num_mapping=2)
    rsd["convs.1.conv.weight"] = rsd["convs.1.conv.weight"][:, :, :, :2]
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": rsd}, path)
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(path)
