"""Read NVIDIA's original TensorFlow StyleGAN2 pickles without TensorFlow and without running code.

Such a file (`stylegan2-ffhq-config-f.pkl`) is a tuple `(G, D, Gs)` of
`dnnlib.tflib.network.Network` objects.  Each pickles as its state: `version`, `name`,
`static_kwargs` (the build arguments), `components` (sub-networks: `mapping`,
`synthesis`), `build_module_src` (Python source that TensorFlow's loader runs; we never
do) and `variables`, a list of (TF variable name, numpy array).  The restricted
unpickler here allows only numpy's array/scalar rebuild functions and a stub for
`Network` whose state is kept as inert data.

The conversion to NVIDIA's PyTorch names follows the mapping NVIDIA documents in
stylegan2-ada-pytorch's `legacy.py`: FC and modulation weights are transposed, conv
weights go from TF's [kh, kw, in, out] to [out, in, kh, kw] (the up-sampling conv is also
flipped in both spatial axes, since TF runs it as a transposed conv), modulation biases
gain +1 (TF adds the 1 at run time), `fmap_base` is half of `channel_base`, and
`dlatent_avg` becomes `mapping.w_avg`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np
import torch

from common.errors import CheckpointError
from weights.config import normalise_config, plain
from weights.networks import GeneratorConfig
from weights.nvidia_pickle import RestrictedUnpickler
from weights.ops import setup_filter

TF_NETWORK = ("dnnlib.tflib.network", "Network")


class NetworkStub:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError("a TensorFlow Network record whose state is not a dict")
        self.state = state


def _multiarray():
    return getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core


_TF_ALLOWED: Dict[Tuple[str, str], Callable[[], Any]] = {
    TF_NETWORK: lambda: NetworkStub,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _multiarray().multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _multiarray().multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): lambda: _multiarray().multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): lambda: _multiarray().multiarray.scalar,
}


@dataclass(frozen=True)
class TFNetwork:
    """One TensorFlow network as data: its build kwargs, variables and sub-networks."""

    name: str
    version: int
    static_kwargs: Dict[str, Any]
    variables: Dict[str, np.ndarray]
    components: Dict[str, TFNetwork]

    def all_variables(self, prefix: str = "") -> Dict[str, np.ndarray]:
        """Variables of this network and its components, named `component/variable`."""
        out = {prefix + k: v for k, v in self.variables.items()}
        for cname, comp in self.components.items():
            out.update(comp.all_variables(f"{prefix}{cname}/"))
        return out


def _network(stub: Any, where: str, depth: int = 0) -> TFNetwork:
    if not isinstance(stub, NetworkStub) or not hasattr(stub, "state") or depth > 4:
        raise CheckpointError(f"{where}: a TensorFlow network component is not a Network record")
    st = stub.state
    variables: Dict[str, np.ndarray] = {}
    for item in st.get("variables") or []:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"{where}: a TensorFlow variable is not a (name, array) pair")
        value = np.asarray(item[1])
        if value.dtype.kind not in "fiu":
            raise CheckpointError(f"{where}: TensorFlow variable {item[0]} is not numeric ({value.dtype})")
        variables[item[0]] = value
    comps = st.get("components") or {}
    if not isinstance(comps, dict):
        raise CheckpointError(f"{where}: TensorFlow network components are not a dict")
    return TFNetwork(
        name=str(st.get("name")),
        version=int(st.get("version") or 0),
        static_kwargs=dict(st.get("static_kwargs") or {}),
        variables=variables,
        components={str(k): _network(v, where, depth + 1) for k, v in comps.items()},
    )


def load_tf_pickle(data: bytes, where: str) -> Dict[str, TFNetwork]:
    """The networks of a TensorFlow StyleGAN2 pickle by role: {'G', 'D', 'Gs'} (or {'Gs'} alone)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), _TF_ALLOWED, "numpy data or a TensorFlow Network record").load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{where}: not a readable TensorFlow pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, NetworkStub):
        return {"Gs": _network(obj, where)}
    if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, NetworkStub) for n in obj):
        return {role: _network(net, where) for role, net in zip(("G", "D", "Gs"), obj)}
    raise CheckpointError(f"{where}: not a TensorFlow StyleGAN2 pickle (expected a tuple (G, D, Gs) of Networks)")


# TF static kwarg -> (where it goes, NVIDIA name); None = ignored (sampling/training only).
_TF_KWARGS: Mapping[str, Any] = {
    "latent_size": ("top", "z_dim"),
    "label_size": ("top", "c_dim"),
    "dlatent_size": ("top", "w_dim"),
    "resolution": ("top", "img_resolution"),
    "num_channels": ("top", "img_channels"),
    "mapping_layers": ("mapping", "num_layers"),
    "label_fmaps": ("mapping", "embed_features"),
    "mapping_fmaps": ("mapping", "layer_features"),
    "mapping_nonlinearity": ("mapping", "activation"),
    "mapping_lrmul": ("mapping", "lr_multiplier"),
    "w_avg_beta": ("mapping", "w_avg_beta"),
    "fmap_max": ("synthesis", "channel_max"),
    "num_fp16_res": ("synthesis", "num_fp16_res"),
    "conv_clamp": ("synthesis", "conv_clamp"),
    "architecture": ("synthesis", "architecture"),
    "resample_kernel": ("synthesis", "resample_filter"),
    "use_noise": ("synthesis", "use_noise"),
    "nonlinearity": ("synthesis", "activation"),
    "truncation_psi": None,
    "truncation_cutoff": None,
    "style_mixing_prob": None,
    "structure": None,
    "dtype": None,
    "is_template_graph": None,
    "randomize_noise": None,
}
_TF_DEFAULTS = {"fmap_decay": 1.0, "fmap_min": 1}  # the channel formula only matches at these


def tf_kwargs_to_nvidia(static_kwargs: Mapping[str, Any], where: str) -> dict:
    """NVIDIA-style init kwargs for a TF generator's `static_kwargs` (legacy.py's renaming)."""
    top: dict = {"z_dim": 512, "w_dim": 512, "img_resolution": 1024, "img_channels": 3}
    mapping: dict = {}
    synthesis: dict = {"channel_base": 16384 * 2}
    for key, value in plain(dict(static_kwargs)).items():
        if key == "fmap_base":
            synthesis["channel_base"] = int(value) * 2
        elif key in _TF_DEFAULTS:
            if value != _TF_DEFAULTS[key]:
                raise CheckpointError(f"{where}: TensorFlow option {key}={value!r} gives another channel layout")
        elif key not in _TF_KWARGS:
            raise CheckpointError(f"{where}: unknown TensorFlow generator option {key}={value!r}")
        elif _TF_KWARGS[key] is not None and value is not None:
            group, name = _TF_KWARGS[key]
            {"top": top, "mapping": mapping, "synthesis": synthesis}[group][name] = value
    return dict(top, mapping_kwargs=mapping, synthesis_kwargs=synthesis)


def tf_generator_state(nets: Mapping[str, TFNetwork], where: str) -> Tuple[GeneratorConfig, Dict[str, torch.Tensor]]:
    """(config, NVIDIA-named state dict) of the `Gs` generator (the moving average, as legacy.py uses)."""
    net = nets.get("Gs")
    if net is None:
        raise CheckpointError(f"{where}: the TensorFlow pickle has no Gs generator")
    if net.version < 4:
        raise CheckpointError(f"{where}: TensorFlow network version {net.version} is too old (needs 4)")
    cfg = normalise_config(tf_kwargs_to_nvidia(net.static_kwargs, where), where)
    return cfg, convert_tf_variables(net.all_variables(), cfg, where)


def convert_tf_variables(tf: Mapping[str, np.ndarray], cfg: GeneratorConfig, where: str) -> Dict[str, torch.Tensor]:
    """Rename and re-lay TF variables as the state dict of our (NVIDIA-named) generator."""
    used: set = set()

    def get(name: str) -> np.ndarray:
        if name not in tf:
            if name.startswith("synthesis/") and any(k.startswith("synthesis/ToRGB_lod") for k in tf):
                raise CheckpointError(
                    f"{where}: a TensorFlow 'orig' architecture generator (ToRGB_lod*); "
                    "photodrag loads 'skip' generators only"
                )
            raise CheckpointError(f"{where}: TensorFlow variable {name} is missing")
        used.add(name)
        return np.asarray(tf[name], dtype=np.float32)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a copy; keeps 0-d shapes

    out: Dict[str, torch.Tensor] = {"mapping.w_avg": t(get("dlatent_avg"))}
    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = t(get(f"mapping/Dense{i}/weight").T)
        out[f"mapping.fc{i}.bias"] = t(get(f"mapping/Dense{i}/bias"))
    filt = setup_filter(cfg.resample_filter)

    def modulated(dst: str, src: str, flip: bool = False) -> None:
        w = get(f"{src}/weight")  # [kh, kw, in, out]
        if flip:
            w = w[::-1, ::-1]
        out[f"{dst}.weight"] = t(w.transpose(3, 2, 0, 1))
        out[f"{dst}.bias"] = t(get(f"{src}/bias"))
        out[f"{dst}.affine.weight"] = t(get(f"{src}/mod_weight").T)
        out[f"{dst}.affine.bias"] = t(get(f"{src}/mod_bias") + 1)

    def layer(dst: str, src: str, noise_idx: int, up: bool) -> None:
        modulated(dst, src, flip=up)
        out[f"{dst}.noise_strength"] = t(get(f"{src}/noise_strength").reshape(()))
        out[f"{dst}.noise_const"] = t(get(f"synthesis/noise{noise_idx}")[0, 0])
        out[f"{dst}.resample_filter"] = filt.clone()

    out["synthesis.b4.const"] = t(get("synthesis/4x4/Const/const")[0])
    for res in cfg.block_resolutions:
        blk, tag = f"synthesis.b{res}", f"synthesis/{res}x{res}"
        out[f"{blk}.resample_filter"] = filt.clone()
        level = int(math.log2(res))
        if res == 4:
            layer(f"{blk}.conv1", f"{tag}/Conv", 0, up=False)
        else:
            layer(f"{blk}.conv0", f"{tag}/Conv0_up", 2 * level - 5, up=True)
            layer(f"{blk}.conv1", f"{tag}/Conv1", 2 * level - 4, up=False)
        modulated(f"{blk}.torgb", f"{tag}/ToRGB")
    extra = sorted(k for k in tf if k not in used and k.split("/")[-1] != "lod")
    if extra:
        raise CheckpointError(
            f"{where}: TensorFlow variable {extra[0]} has no place in a StyleGAN2 'skip' generator ({len(extra)} such)"
        )
    return out
