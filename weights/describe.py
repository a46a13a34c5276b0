"""What `photodrag weights inspect` prints about a checkpoint: read safely, nothing built or run."""

from __future__ import annotations

from typing import Any, List, Tuple

from common.errors import CheckpointError
from weights.checkpoint import LAYOUTS, Checkpoint
from weights.config import synthesis_options


def _fmt(value: Any) -> str:
    if value is None:
        return "?"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def describe_checkpoint(ckpt: Checkpoint) -> List[Tuple[str, str]]:
    """(label, value) rows: layout, networks, resolution, z/w dims, mapping layers, channels, size, status."""
    cfg, kw = ckpt.config, ckpt.kwargs
    if cfg is not None:
        res, z_dim, w_dim, layers = cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers
        base, cmax, fp16, clamp = cfg.channel_base, cfg.channel_max, cfg.num_fp16_res, cfg.conv_clamp
    else:  # refused: show what the file itself says
        try:
            syn = synthesis_options(kw, str(ckpt.path))
        except CheckpointError:
            syn = {}
        res, z_dim, w_dim = kw.get("img_resolution"), kw.get("z_dim"), kw.get("w_dim")
        layers = (kw.get("mapping_kwargs") or {}).get("num_layers")
        base, cmax = syn.get("channel_base"), syn.get("channel_max")
        fp16, clamp = syn.get("num_fp16_res"), syn.get("conv_clamp")
    return [
        ("file", str(ckpt.path)),
        ("layout", f"{ckpt.layout}: {LAYOUTS[ckpt.layout]}"),
        ("networks", ", ".join(ckpt.networks)),
        ("resolution", _fmt(res)),
        ("z_dim / w_dim", f"{_fmt(z_dim)} / {_fmt(w_dim)}"),
        ("mapping layers", _fmt(layers)),
        ("channel base / max", f"{_fmt(base)} / {_fmt(cmax)}"),
        ("fp16 res / conv clamp", f"{_fmt(fp16)} / {'none' if clamp is None and cfg else _fmt(clamp)}"),
        ("num_ws", _fmt(cfg.num_ws if cfg else None)),
        ("parameters", _fmt(ckpt.parameter_count)),
        ("status", "loads" if ckpt.refusal is None else f"refused: {ckpt.refusal}"),
    ]
