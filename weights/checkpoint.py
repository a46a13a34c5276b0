"""Load and save generators: NVIDIA `.pkl`, rosinality `.pt`, and our safetensors format.

Nothing here executes code from a checkpoint: pickles go through the restricted
unpickler in `weights.nvidia_pickle`, `.pt` files through `torch.load(weights_only=True)`,
and our own files are safetensors with the init kwargs as JSON metadata.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pipeline.errors import CheckpointError, UsageError
from pipeline.fileio import atomic_path
from weights.networks import Generator
from weights.nvidia_pickle import generator_record
from weights.rosinality import rosinality_to_nvidia

FORMAT_NAME = "photodrag-generator"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def detect_format(path: PathLike) -> str:
    """'nvidia-pickle', 'torch' (zip `torch.save`) or 'safetensors', from the file's first bytes."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{path} is empty or truncated")
    if head[:2] == b"PK":
        return "torch"
    if head[0] == 0x80:
        return "nvidia-pickle"
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < header_len < path.stat().st_size:
        return "safetensors"
    raise CheckpointError(f"{path} is not a checkpoint this tool reads (.pkl, .pt or .safetensors)")


def read_generator_state(path: PathLike) -> Tuple[dict, Dict[str, torch.Tensor], str]:
    """(NVIDIA init kwargs, NVIDIA-named state dict, source format) of the generator in `path`."""
    kind = detect_format(path)
    if kind == "nvidia-pickle":
        rec = generator_record(Path(path).read_bytes())
        return rec.init_kwargs(), rec.state_dict(), kind
    if kind == "torch":
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"refusing {path}: not plain tensor data ({str(exc).splitlines()[0]})") from None
        if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
            raise CheckpointError(f"{path} has no 'g_ema' generator (expected a rosinality stylegan2-pytorch checkpoint)")
        kwargs, sd = rosinality_to_nvidia(ckpt["g_ema"], ckpt.get("latent_avg"))
        return kwargs, sd, kind
    try:
        sd = load_file(str(path))
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is a corrupt safetensors file ({exc})") from None
    if "init_kwargs" not in meta:
        raise CheckpointError(f"{path} has no generator init_kwargs in its metadata")
    return json.loads(meta["init_kwargs"]), {k: v.float() for k, v in sd.items()}, kind


def build_generator(init_kwargs: dict, state_dict: Dict[str, torch.Tensor]) -> Generator:
    """Our Generator with exactly the given weights; any key or shape mismatch is a clear error."""
    try:
        G = Generator(**init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"unsupported generator configuration: {exc}") from None
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"generator weights do not fit: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                              f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for key, ref in expected.items():
        if tuple(state_dict[key].shape) != tuple(ref.shape):
            raise CheckpointError(f"generator weight {key} has shape {list(state_dict[key].shape)}, "
                                  f"expected {list(ref.shape)}")
    G.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()})
    return G.eval().requires_grad_(False)


def load_generator(path: PathLike, device: Union[str, torch.device] = "cpu") -> Generator:
    """Load any supported generator checkpoint, in eval mode with frozen weights."""
    kwargs, sd, _ = read_generator_state(path)
    return build_generator(kwargs, sd).to(device)


def save_generator(G: Generator, path: PathLike, fp16: bool = False, meta: Optional[dict] = None) -> None:
    """Write G as safetensors (optionally fp16 weights) with the init kwargs as JSON, atomically."""
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in G.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "init_kwargs": json.dumps(G.init_kwargs)}
    if meta:
        metadata.update({k: json.dumps(v) for k, v in meta.items()})
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)
