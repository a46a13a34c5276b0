"""One normalising step from any checkpoint layout's generator kwargs to our `GeneratorConfig`.

The layouts spell the same network differently: stylegan2-ada-pytorch nests the
synthesis options under `synthesis_kwargs`, NVIDIA's StyleGAN3 codebase (the NGC
`stylegan2-ffhq-*.pkl` files) passes them flat next to `z_dim`, TensorFlow pickles use
their own names (converted in `weights.tf_pickle` before they get here).  Options that do
not change the weights or the picture (speed switches, training-only rates) are dropped;
options set to the value we implement are accepted; anything else changes the network and
is refused with one line naming the option and the file.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from common.errors import CheckpointError

# Switches that affect speed or training only, never the weights or the picture.
HARMLESS_SYNTHESIS = frozenset({"fused_modconv_default", "fp16_channels_last", "channels_last"})
HARMLESS_MAPPING = frozenset({"w_avg_beta"})
# Options we implement only at one value; any other value is another network.
FIXED_SYNTHESIS = {"architecture": "skip", "use_noise": True, "activation": "lrelu", "kernel_size": 3}
FIXED_MAPPING = {"activation": "lrelu"}
# Options that only StyleGAN3's `training.networks_stylegan3` generator takes.
STYLEGAN3_OPTIONS = frozenset(
    {
        "num_critical",
        "first_cutoff",
        "first_stopband",
        "last_stopband_rel",
        "margin_size",
        "output_scale",
        "filter_size",
        "lrelu_upsampling",
        "use_radial_filters",
        "magnitude_ema_beta",
        "conv_kernel",
    }
)
_TOP = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


@dataclass(frozen=True)
class GeneratorConfig:
    """The constructor arguments of an (unconditional, skip-architecture) StyleGAN2 generator."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: Optional[float] = None
    resample_filter: Tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self) -> None:
        log2 = math.log2(self.img_resolution) if self.img_resolution > 0 else 0
        if self.img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {self.img_resolution}")

    @property
    def block_resolutions(self) -> List[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        # one w per conv layer plus one for the last torgb
        return 2 * len(self.block_resolutions)

    @classmethod
    def from_init_kwargs(cls, kw: dict) -> "GeneratorConfig":
        """Build from NVIDIA's `Generator` init kwargs (as stored in their pickles): the one parser,
        `normalise_config`, with its one list of ignored and refused options."""
        return normalise_config(kw, "generator init kwargs")

    def to_init_kwargs(self) -> dict:
        """NVIDIA-style init kwargs (what `from_init_kwargs` reads back)."""
        return dict(
            z_dim=self.z_dim,
            c_dim=0,
            w_dim=self.w_dim,
            img_resolution=self.img_resolution,
            img_channels=self.img_channels,
            mapping_kwargs=dict(num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier),
            synthesis_kwargs=dict(
                channel_base=self.channel_base,
                channel_max=self.channel_max,
                num_fp16_res=self.num_fp16_res,
                conv_clamp=self.conv_clamp,
                resample_filter=list(self.resample_filter),
            ),
        )


def plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, dict subclasses -> dicts, tuples -> lists (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _refuse(where: str, what: str) -> CheckpointError:
    return CheckpointError(f"{where}: {what}; photodrag loads unconditional StyleGAN2 'skip' generators only")


def _int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(where, f"generator option {name}={value!r} is not an integer")
    return value


def synthesis_options(kwargs: Mapping[str, Any], where: str) -> dict:
    """The synthesis options, whether nested (`synthesis_kwargs`) or flat at the top level."""
    nested = dict(kwargs.get("synthesis_kwargs") or {})
    flat = {k: v for k, v in kwargs.items() if k not in _TOP}
    for key in set(nested) & set(flat):
        if nested[key] != flat[key]:
            raise _refuse(where, f"option {key} is given twice with different values")
    return {**nested, **flat}


def is_stylegan3(kwargs: Mapping[str, Any]) -> Optional[str]:
    """The first StyleGAN3-only option in `kwargs` (flat or nested), or None."""
    opts = {**dict(kwargs.get("synthesis_kwargs") or {}), **kwargs}
    return next((k for k in sorted(opts) if k in STYLEGAN3_OPTIONS), None)


def normalise_config(kwargs: Mapping[str, Any], where: str) -> GeneratorConfig:
    """`GeneratorConfig` from a generator's init kwargs in any supported layout, or one-line refusal."""
    kw = plain(kwargs)
    if not isinstance(kw, dict):
        raise _refuse(where, "the generator's init kwargs are not a dict")
    sg3 = is_stylegan3(kw)
    if sg3:
        raise CheckpointError(
            f"{where}: a StyleGAN3 generator (training.networks_stylegan3, option {sg3}); "
            "photodrag loads StyleGAN2 generators only"
        )
    c_dim = kw.get("c_dim") or 0
    if c_dim:
        raise _refuse(where, f"a conditional generator (c_dim={c_dim})")
    for key in ("z_dim", "w_dim", "img_resolution"):
        if key not in kw:
            raise _refuse(where, f"the generator's init kwargs have no {key}")
    out: dict = {key: _int(kw[key], key, where) for key in ("z_dim", "w_dim", "img_resolution")}
    out["img_channels"] = _int(kw.get("img_channels", 3), "img_channels", where)

    out.update(_mapping_config(dict(kw.get("mapping_kwargs") or {}), out["w_dim"], where))
    out.update(_synthesis_config(synthesis_options(kw, where), where))
    try:
        return GeneratorConfig(**out)
    except ValueError as exc:
        raise _refuse(where, str(exc)) from None


def _mapping_config(mapping: dict, w_dim: int, where: str) -> dict:
    """GeneratorConfig fields from the mapping network's options (consumed from `mapping`)."""
    out: dict = {}
    for key in HARMLESS_MAPPING:
        mapping.pop(key, None)
    out["mapping_layers"] = _int(mapping.pop("num_layers", 8), "mapping num_layers", where)
    out["mapping_lr_multiplier"] = float(mapping.pop("lr_multiplier", 0.01))
    for key in ("layer_features", "embed_features"):
        value = mapping.pop(key, None)
        if value not in (None, w_dim):
            raise _refuse(where, f"mapping option {key}={value!r}")
    for key, want in FIXED_MAPPING.items():
        value = mapping.pop(key, want)
        if value != want:
            raise _refuse(where, f"mapping option {key}={value!r} (only {want!r})")
    if mapping:
        key = min(mapping)
        raise _refuse(where, f"unknown mapping option {key}={mapping[key]!r}")

    return out


def _synthesis_config(synthesis: dict, where: str) -> dict:
    """GeneratorConfig fields from the synthesis network's options (consumed from `synthesis`)."""
    out: dict = {}
    for key in HARMLESS_SYNTHESIS:
        synthesis.pop(key, None)
    for key, want in FIXED_SYNTHESIS.items():
        value = synthesis.pop(key, want)
        if value != want:
            raise _refuse(where, f"option {key}={value!r} (only {want!r})")
    for key in ("channel_base", "channel_max", "num_fp16_res"):
        if key in synthesis:
            out[key] = _int(synthesis.pop(key), key, where)
    if "conv_clamp" in synthesis:
        clamp = synthesis.pop("conv_clamp")
        if clamp is not None and not isinstance(clamp, (int, float)):
            raise _refuse(where, f"option conv_clamp={clamp!r} is not a number")
        out["conv_clamp"] = clamp
    if "resample_filter" in synthesis:
        filt = synthesis.pop("resample_filter")
        if not isinstance(filt, list) or not filt or not all(isinstance(v, (int, float)) for v in filt):
            raise _refuse(where, f"option resample_filter={filt!r} is not a 1-D filter")
        out["resample_filter"] = tuple(filt)
    if synthesis:
        key = min(synthesis)
        raise _refuse(where, f"unknown synthesis option {key}={synthesis[key]!r}")
    return out
