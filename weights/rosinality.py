"""Convert rosinality stylegan2-pytorch `g_ema` state dicts to NVIDIA names and shapes.

Both implementations compute the same network: equalised-lr layers scale their
weights at run time by the same factors, modulated convs are demodulated (so the
1/sqrt(fan_in) factor rosinality folds into the conv weight cancels), noise is
added after the conv and before bias + leaky ReLU, and both use the [1,3,3,1] FIR
filter with the same padding.  Only names, shapes and the channel layout differ.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import torch

from common.errors import CheckpointError
from weights.ops import setup_filter


def _channels_config(channels: Dict[int, int]) -> Tuple[int, int]:
    """(channel_base, channel_max) that reproduce `channels` = {res: channels}."""
    top = max(channels)
    base, cmax = channels[top] * top, channels[4]
    for res, ch in channels.items():
        if min(base // res, cmax) != ch:
            raise CheckpointError(f"channel layout {channels} cannot be expressed as channel_base/channel_max")
    return base, cmax


def rosinality_to_nvidia(
    sd: Dict[str, torch.Tensor], latent_avg: Optional[torch.Tensor] = None
) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Return (NVIDIA init kwargs, NVIDIA state dict) for a rosinality `g_ema` state dict."""
    try:
        n_mlp = len({m.group(1) for k in sd for m in [re.match(r"style\.(\d+)\.weight$", k)] if m})
        w_dim = sd["style.1.weight"].shape[1]
        z_dim = w_dim
        num_up = len({int(m.group(1)) for k in sd for m in [re.match(r"convs\.(\d+)\.", k)] if m}) // 2
        res_top = 4 * 2**num_up
        img_channels = sd["to_rgb1.conv.weight"].shape[1]
        out: Dict[str, torch.Tensor] = {}
        for i in range(n_mlp):
            out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
            out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
        out["mapping.w_avg"] = latent_avg.reshape(-1) if latent_avg is not None else torch.zeros(w_dim)
        filt = setup_filter()

        def styled(src: str, dst: str, noise_idx: int) -> None:
            out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
            out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
            out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
            out[f"{dst}.bias"] = sd[f"{src}.activate.bias"].reshape(-1)
            out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
            out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
            out[f"{dst}.resample_filter"] = filt.clone()

        def torgb(src: str, dst: str) -> None:
            out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
            out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
            out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
            out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

        channels = {4: sd["input.input"].shape[1]}
        out["synthesis.b4.const"] = sd["input.input"][0]
        out["synthesis.b4.resample_filter"] = filt.clone()
        styled("conv1", "synthesis.b4.conv1", 0)
        torgb("to_rgb1", "synthesis.b4.torgb")
        for k in range(num_up):
            res = 8 * 2**k
            blk = f"synthesis.b{res}"
            out[f"{blk}.resample_filter"] = filt.clone()
            styled(f"convs.{2 * k}", f"{blk}.conv0", 2 * k + 1)
            styled(f"convs.{2 * k + 1}", f"{blk}.conv1", 2 * k + 2)
            torgb(f"to_rgbs.{k}", f"{blk}.torgb")
            channels[res] = sd[f"convs.{2 * k + 1}.conv.weight"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"not a rosinality StyleGAN2 generator: missing {exc.args[0]}") from None
    base, cmax = _channels_config(channels)
    init_kwargs = dict(
        z_dim=z_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=res_top,
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=n_mlp),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=None),
    )
    return init_kwargs, {k: v.detach().to(torch.float32) for k, v in out.items()}
