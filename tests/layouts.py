"""Write generator checkpoints in the layouts that exist in the world, for the loader tests.

- NGC (NVIDIA's StyleGAN3 codebase, `training.networks_stylegan2`): a dict with G, D, G_ema,
  augment_pipe and training_set_kwargs; persistent-object records with real class names;
  the Generator's synthesis options flat in its init kwargs.
- TensorFlow StyleGAN2: a tuple (G, D, Gs) of `dnnlib.tflib.network.Network` states with
  TF variable names and layouts, pickle protocol 3, numpy 1.x module names.
- rosinality stylegan2-pytorch training checkpoint: g, d, g_ema, optimisers, args Namespace.

The writers install throw-away stand-ins for NVIDIA's modules only while pickling; the
loaders under test never see them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import pickle
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch

from helpers import _module_tree, fake_nvidia_modules, nvidia_to_rosinality
from weights.networks import Generator

NGC_SOURCE = (
    '"""Network architectures from the paper\n"Analyzing and Improving the Image Quality of StyleGAN".\n'
    "Matches the original implementation of configs E-F by Karras et al. at\n"
    'https://github.com/NVlabs/stylegan2/blob/master/training/networks_stylegan2.py"""\n'
    "import torch\nfrom torch_utils import persistence\n"
)


def _real_class(name: str, top: str) -> str:
    """The class NVIDIA's networks_stylegan2 uses for a sub-module attribute name."""
    block = "DiscriminatorBlock" if top == "Discriminator" else "SynthesisBlock"
    for pattern, cls in (
        (r"mapping", "MappingNetwork"),
        (r"synthesis", "SynthesisNetwork"),
        (r"b\d+", block),
        (r"conv[01]", "SynthesisLayer"),
        (r"torgb", "ToRGBLayer"),
        (r"fromrgb", "Conv2dLayer"),
        (r"fc\d+|affine|out", "FullyConnectedLayer"),
    ):
        if re.fullmatch(pattern, name):
            return cls
    raise AssertionError(name)


def ngc_kwargs(G: Generator, **extra: Any) -> dict:
    """The Generator init kwargs as the StyleGAN3 codebase stores them: synthesis options flat."""
    cfg = G.config
    kw = dict(
        z_dim=cfg.z_dim,
        c_dim=0,
        w_dim=cfg.w_dim,
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        mapping_kwargs={"num_layers": cfg.mapping_layers},
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=cfg.num_fp16_res,
        conv_clamp=cfg.conv_clamp,
        fused_modconv_default="inference_only",
    )
    kw.update(extra)
    return kw


def write_ngc_pickle(
    path: Path,
    G: Generator,
    kwargs: Optional[dict] = None,
    with_training_state: bool = True,
    training_set_kwargs: Optional[dict] = None,
    augment_buffers: Optional[dict] = None,
) -> Path:
    """Write G as an NGC `stylegan2-ffhq-*.pkl` does (G_ema; optionally G, D, augment_pipe, training set)."""
    with fake_nvidia_modules() as fns:
        kw = kwargs if kwargs is not None else ngc_kwargs(G)
        kw = dict(kw, mapping_kwargs=fns.EasyDict(kw.get("mapping_kwargs", {})))
        sd = G.state_dict()

        def record(class_name, state_dict, init_kwargs):
            rec = _module_tree(fns, state_dict, "", class_name, init_kwargs, NGC_SOURCE)
            _rename_classes(rec, class_name)
            return rec

        data: Dict[str, Any] = {}
        if with_training_state:
            data["G"] = record("Generator", sd, kw)
            d_sd = {
                "b8.fromrgb.weight": torch.randn(4, 3, 1, 1),
                "b8.fromrgb.bias": torch.zeros(4),
                "b4.out.weight": torch.randn(1, 4),
                "b4.out.bias": torch.zeros(1),
            }
            data["D"] = record(
                "Discriminator",
                d_sd,
                dict(
                    c_dim=0,
                    img_resolution=G.img_resolution,
                    img_channels=3,
                    channel_base=kw.get("channel_base"),
                    channel_max=kw.get("channel_max"),
                ),
            )
        data["G_ema"] = record("Generator", sd, kw)
        if with_training_state:
            aug = _module_tree(fns, {}, "", "AugmentPipe", dict(xflip=1, rotate90=1, xint=1), "import torch\n")
            aug.state["_buffers"].update(
                augment_buffers
                if augment_buffers is not None
                else {"p": torch.zeros([]), "Hz_geom": torch.randn(27), "Hz_fbank": torch.randn(4, 28)}
            )
            data["augment_pipe"] = aug
            data["training_set_kwargs"] = fns.EasyDict(
                training_set_kwargs
                if training_set_kwargs is not None
                else dict(
                    class_name="training.dataset.ImageFolderDataset",
                    path="ffhq.zip",
                    use_labels=False,
                    max_size=70000,
                    xflip=True,
                    resolution=np.int64(G.img_resolution),
                    random_seed=np.int32(0),
                )
            )
        path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _rename_classes(rec, top: str) -> None:
    for name, child in rec.state["_modules"].items():
        child.class_name = _real_class(name, top)
        _rename_classes(child, top)


# TensorFlow -------------------------------------------------------------------------------
@contextlib.contextmanager
def fake_tf_network_module() -> Iterator[type]:
    """A stand-in `dnnlib.tflib.network.Network` that pickles its state the way the real one does."""

    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    mod = types.ModuleType("dnnlib.tflib.network")
    mod.Network = Network
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(
        {
            "dnnlib": types.ModuleType("dnnlib"),
            "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
            "dnnlib.tflib.network": mod,
        }
    )
    try:
        yield Network
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def nvidia_to_tf_variables(G: Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """G's weights as TF StyleGAN2 variables: {'': top, 'mapping': ..., 'synthesis': ...}."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in G.state_dict().items()}
    top = {"dlatent_avg": sd["mapping.w_avg"]}
    mapping = {}
    for i in range(G.config.mapping_layers):
        mapping[f"Dense{i}/weight"] = sd[f"mapping.fc{i}.weight"].T.copy()
        mapping[f"Dense{i}/bias"] = sd[f"mapping.fc{i}.bias"]
    syn: Dict[str, np.ndarray] = {"4x4/Const/const": sd["synthesis.b4.const"][None]}

    def modulated(src: str, dst: str, up: bool = False) -> None:
        w = sd[f"{src}.weight"].transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
        syn[f"{dst}/weight"] = (w[::-1, ::-1] if up else w).copy()
        syn[f"{dst}/bias"] = sd[f"{src}.bias"]
        syn[f"{dst}/mod_weight"] = sd[f"{src}.affine.weight"].T.copy()
        syn[f"{dst}/mod_bias"] = sd[f"{src}.affine.bias"] - 1

    def layer(src: str, dst: str, noise: int, up: bool = False) -> None:
        modulated(src, dst, up)
        syn[f"{dst}/noise_strength"] = sd[f"{src}.noise_strength"].reshape(())
        syn[f"noise{noise}"] = sd[f"{src}.noise_const"][None, None]

    for res in G.config.block_resolutions:
        lvl = int(math.log2(res))
        if res == 4:
            layer("synthesis.b4.conv1", "4x4/Conv", 0)
        else:
            layer(f"synthesis.b{res}.conv0", f"{res}x{res}/Conv0_up", 2 * lvl - 5, up=True)
            layer(f"synthesis.b{res}.conv1", f"{res}x{res}/Conv1", 2 * lvl - 4)
        modulated(f"synthesis.b{res}.torgb", f"{res}x{res}/ToRGB")
    syn["lod"] = np.float32(0.0)
    return {"": top, "mapping": mapping, "synthesis": syn}


def tf_static_kwargs(G: Generator) -> dict:
    cfg = G.config
    return dict(
        num_channels=3,
        resolution=cfg.img_resolution,
        label_size=0,
        latent_size=cfg.z_dim,
        dlatent_size=cfg.w_dim,
        mapping_layers=cfg.mapping_layers,
        fmap_base=cfg.channel_base // 2,
        fmap_max=cfg.channel_max,
        truncation_psi=0.7,
    )


def write_tf_pickle(
    path: Path, G: Generator, static_kwargs: Optional[dict] = None, extra_state: Optional[dict] = None
) -> Path:
    """Write G as NVIDIA's TensorFlow StyleGAN2 pickle: (G, D, Gs) Networks, protocol 3, numpy 1.x names."""
    kw = static_kwargs if static_kwargs is not None else tf_static_kwargs(G)
    var = nvidia_to_tf_variables(G)
    with fake_tf_network_module() as Network:

        def net(name, variables, components=None):
            state = dict(
                version=4,
                name=name,
                static_kwargs=dict(kw),
                components=components or {},
                build_module_src="def G_main(*args, **kwargs):\n    raise SystemExit('never run')\n",
                build_func_name=name,
                variables=list(variables.items()),
            )
            state.update(extra_state or {})
            return Network(state)

        def generator(name):
            comps = {"mapping": net("G_mapping", var["mapping"]), "synthesis": net("G_synthesis", var["synthesis"])}
            return net(name, var[""], comps)

        d = net("D", {"32x32/FromRGB/weight": np.zeros((1, 1, 3, 8), np.float32)})
        data = pickle.dumps((generator("G"), d, generator("Gs")), protocol=3)
    # numpy 1.x wrote numpy.core.multiarray; GLOBAL arguments are newline-terminated text
    data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)
    return path


# rosinality ---------------------------------------------------------------------------------
def write_rosinality_training_checkpoint(path: Path, G: Generator) -> Path:
    """A `train.py` checkpoint: g, d, g_ema, g_optim, d_optim (Adam state), args Namespace, latent_avg."""
    sd = G.state_dict()
    rsd = nvidia_to_rosinality(sd, num_mapping=G.config.mapping_layers)
    d = OrderedDict([("convs.0.0.weight", torch.randn(8, 3, 1, 1)), ("final_linear.1.bias", torch.zeros(1))])
    adam = {
        "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
        "param_groups": [
            {"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "params": [0]}
        ],
    }
    args = argparse.Namespace(
        path="lmdb",
        iter=800000,
        batch=16,
        n_sample=64,
        size=G.img_resolution,
        r1=10,
        path_regularize=2,
        mixing=0.9,
        ckpt=None,
        lr=0.002,
        channel_multiplier=2,
        latent=G.w_dim,
        n_mlp=G.config.mapping_layers,
        start_iter=0,
        distributed=False,
    )
    torch.save(
        {
            "g": {k: v + 0 for k, v in rsd.items()},
            "d": d,
            "g_ema": rsd,
            "g_optim": adam,
            "d_optim": adam,
            "args": args,
            "latent_avg": sd["mapping.w_avg"],
        },
        path,
    )
    return path
