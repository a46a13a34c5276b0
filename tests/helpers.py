"""Test helpers: tiny real-architecture generators and checkpoints in other projects' layouts."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
import urllib.error
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch

from weights.networks import Generator
from weights.tiny import tiny_random_generator

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
PHOTOS = SHARED / "photos"
NO_SHARED = f"needs the shared reference data at {SHARED} (absent in this checkout)"
TOM = PHOTOS / "Tom_Cruise_avp_2014_4.jpg"  # only for the tests of shared reference results
# The face photo of every other test: committed with the package (public domain, pipeline/data/README.md),
# so a clone without ../shared tests itself.  Points in its pixels: dlib's landmarks 54 and 48.
PORTRAIT = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "astronaut.jpg"
MOUTH_RIGHT, TARGET = (246, 141), (251, 136)  # the right mouth corner, dragged up and out
MOUTH_LEFT, LEFT_TARGET = (200, 139), (195, 135)
DRAG = f"{MOUTH_RIGHT[0]},{MOUTH_RIGHT[1]}:{TARGET[0]},{TARGET[1]}"
LEFT_DRAG = f"{MOUTH_LEFT[0]},{MOUTH_LEFT[1]}:{LEFT_TARGET[0]},{LEFT_TARGET[1]}"


def mirrored_portrait(folder: Path) -> Path:
    """Another face photo (PORTRAIT mirrored: other landmarks, other bytes), written in `folder`."""
    from PIL import Image, ImageOps

    path = Path(folder) / "mirrored.jpg"
    ImageOps.mirror(Image.open(PORTRAIT)).save(path, quality=92)
    return path


def two_faces_photo(folder: Path) -> Path:
    """A photo with two faces: PORTRAIT and its mirror image side by side, written in `folder`."""
    from PIL import Image, ImageOps

    one = Image.open(PORTRAIT).convert("RGB")
    both = Image.new("RGB", (one.width * 2, one.height))
    both.paste(one, (0, 0))
    both.paste(ImageOps.mirror(one), (one.width, 0))
    path = Path(folder) / "two_faces.jpg"
    both.save(path, quality=92)
    return path


def faceless_photo(folder: Path) -> Path:
    """A photo with no face in it (smooth colour noise), written in `folder`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    path = Path(folder) / "faceless.jpg"
    Image.fromarray(small).resize((320, 240), Image.BICUBIC).save(path)
    return path


_RANDOM_LPIPS: Dict[tuple, object] = {}


def random_lpips(net: str, store=None, resolution=None):
    """An LPIPS loader (`LoadedModels(lpips=...)`, `main(lpips=...)`): random backbones, seeded, so
    every process and every call builds the same nets; kept per (net, resolution), no files needed."""
    from inversion.perceptual import Perceptual

    key = (net, resolution)
    if key not in _RANDOM_LPIPS:
        state = torch.random.get_rng_state()
        torch.manual_seed(1234)
        try:
            _RANDOM_LPIPS[key] = Perceptual(net, random_backbone=True, resolution=resolution)
        finally:
            torch.random.set_rng_state(state)
    return _RANDOM_LPIPS[key]


def lpips_from(nets):
    """An LPIPS loader handing out these nets by name."""
    return lambda net, store, resolution: nets[net]


def cli(capsys, *argv, opts=("--quiet", "--device", "cpu"), lpips=random_lpips, opener=None):
    """Run the command line in process: (exit code, stdout, stderr).  `opts` go before the command;
    `lpips` builds the LPIPS nets (random backbones; None: the weights store's, as a user runs it);
    `opener` makes the downloads' requests (None: the network)."""
    from run_pipeline import main

    with pytest.raises(SystemExit) as exc:
        main([*opts, *argv], lpips=lpips, opener=opener)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return exc.value.code, out, err


def run(argv, capsys, lpips=random_lpips, opener=None):
    """`cli` with exactly the arguments given (no --quiet / --device)."""
    return cli(capsys, *argv, opts=(), lpips=lpips, opener=opener)


def no_network(url, offset, timeout):
    """A download opener (`main(opener=...)`, `WeightStore(opener=...)`) for a machine offline."""
    raise urllib.error.URLError("network is unreachable (test)")


BUFFER_NAMES = ("w_avg", "resample_filter", "noise_const")


def tiny_generator(res: int = 32, seed: int = 0, dim: int = 32) -> Generator:
    """A small generator of the real architecture with random, non-trivial weights (weights.tiny's);
    the global RNG is seeded with `seed` too, as the tests that draw after it expect."""
    torch.manual_seed(seed)
    return tiny_random_generator(res=res, dim=dim, seed=seed)


@contextlib.contextmanager
def fake_nvidia_modules() -> Iterator[types.SimpleNamespace]:
    """Install stand-ins for `torch_utils.persistence` and `dnnlib.util` so pickle can name them.

    They exist only while *writing* a pickle in NVIDIA's layout; the loader under test
    must work without them (and without NVIDIA's code anywhere).
    """

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run
        raise AssertionError("the real reconstruct function must never be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    mods = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib, "dnnlib.util": util}
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Persistent:
    """Pickles exactly like an NVIDIA persistent object: reconstruct(meta) with source + state."""

    def __init__(self, fns, class_name: str, state: dict, module_src: str) -> None:
        self.fns, self.class_name, self.state, self.module_src = fns, class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.fns.reconstruct, (meta,))


def _module_tree(
    fns, sd: Dict[str, torch.Tensor], prefix: str, class_name: str, init_kwargs: dict, module_src: str
) -> _Persistent:
    params, buffers, children = OrderedDict(), OrderedDict(), OrderedDict()
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if "." in rest:
            children.setdefault(rest.split(".", 1)[0], None)
        elif rest in BUFFER_NAMES:
            buffers[rest] = value.clone()
        else:
            params[rest] = torch.nn.Parameter(value.clone())
    modules = OrderedDict((c, _module_tree(fns, sd, f"{prefix}{c}.", c, {}, module_src)) for c in children)
    state = dict(
        training=False,
        _parameters=params,
        _buffers=buffers,
        _modules=modules,
        _non_persistent_buffers_set=set(),
        _forward_hooks=OrderedDict(),
        _init_args=(),
        _init_kwargs=fns.EasyDict(init_kwargs),
    )
    return _Persistent(fns, class_name, state, module_src)


NVIDIA_LIKE_SOURCE = "import torch\n\nclass Generator(torch.nn.Module):\n    pass\n"


def write_nvidia_pickle(path: Path, G: Generator, module_src: str = NVIDIA_LIKE_SOURCE, key: str = "G_ema") -> Path:
    """Write `G` as an NVIDIA stylegan2-ada-pytorch network pickle ({'G', 'D', 'G_ema', ...})."""
    with fake_nvidia_modules() as fns:
        kwargs = G.init_kwargs
        kwargs = dict(
            kwargs,
            mapping_kwargs=fns.EasyDict(kwargs["mapping_kwargs"]),
            synthesis_kwargs=fns.EasyDict(kwargs["synthesis_kwargs"]),
        )
        rec = _module_tree(fns, G.state_dict(), "", "Generator", kwargs, module_src)
        data = {key: rec, "D": None, "augment_pipe": None, "training_set_kwargs": fns.EasyDict(resolution=32)}
        path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def nvidia_to_rosinality(sd: Dict[str, torch.Tensor], num_mapping: int):
    """Inverse of weights.rosinality's name mapping, to write rosinality-layout test files."""
    out = {}
    for i in range(num_mapping):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    blocks = sorted({int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b")})
    noise_idx = 0

    def styled(src, dst):
        nonlocal noise_idx
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"noises.noise_{noise_idx}"] = sd[f"{src}.noise_const"][None, None]
        noise_idx += 1

    def torgb(src, dst):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("synthesis.b4.conv1", "conv1")
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k, res in enumerate(blocks[1:]):
        styled(f"synthesis.b{res}.conv0", f"convs.{2 * k}")
        styled(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}")
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
    return out


def tiny_services(model: Path, cache_dir: Path, nets, *, resolution: int = 64, inversion_config=None, **kw):
    """The web editor's Services on a saved tiny model with the given (random-backbone) LPIPS nets; the
    inversion defaults to a 3-step preview, and `kw` sets any other field (drag_config, blend, ...)."""
    from inversion.cache import InversionCache
    from inversion.config import make_config
    from pipeline.models import LoadedModels, OpenModels
    from pipeline.webui.session import Services
    from weights.models import ChosenModel

    chosen = ChosenModel(f"tiny random-weight test generator ({Path(model).name})", Path(model), "tiny", resolution)
    models = OpenModels(chosen, LoadedModels(lpips=lpips_from(nets)), None, torch.device("cpu"))
    return Services(
        models,
        InversionCache(cache_dir),
        inversion_config or make_config("preview", projection_steps=3, tuning_steps=1),
        **kw,
    )
