"""Load and save generators: NVIDIA `.pkl` (PyTorch or TensorFlow), rosinality `.pt`, our safetensors.

Nothing here executes code from a checkpoint: PyTorch pickles go through the restricted
unpickler in `weights.nvidia_pickle`, TensorFlow pickles through the one in
`weights.tf_pickle`, `.pt` files through `torch.load(weights_only=True)`, and our own
files are safetensors with the init kwargs as JSON metadata.  `read_checkpoint` reports
what a file is (layout, config, networks) without building anything; every layout's
kwargs go through the one normalising step in `weights.config`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from common.errors import CheckpointError, UsageError
from common.fileio import atomic_path
from weights.config import is_stylegan3, normalise_config
from weights.networks import Generator, GeneratorConfig
from weights.nvidia_pickle import PersistentRecord, first_global, load_network_pickle
from weights.rosinality import rosinality_to_nvidia
from weights.tf_pickle import (
    TF_NETWORK,
    load_tf_pickle,
    tf_generator_state,
    tf_kwargs_to_nvidia,
)

FORMAT_NAME = "photodrag-generator"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]

# layout name -> what it is, as `weights inspect` prints it
LAYOUTS = {
    "ngc": "NVIDIA PyTorch pickle, StyleGAN3 codebase (training.networks_stylegan2, flat synthesis options; "
    "NGC stylegan2-ffhq-*.pkl)",
    "stylegan2-ada": "NVIDIA stylegan2-ada-pytorch pickle (training.networks, nested synthesis_kwargs)",
    "stylegan3": "NVIDIA StyleGAN3 pickle (training.networks_stylegan3) - not StyleGAN2, refused",
    "tensorflow": "NVIDIA TensorFlow StyleGAN2 pickle (dnnlib.tflib.network.Network; stylegan2-ffhq-config-f.pkl)",
    "rosinality": "rosinality stylegan2-pytorch checkpoint (.pt, g_ema state dict)",
    "photodrag": "photodrag safetensors generator",
}
_BUFFERS = ("w_avg", "resample_filter", "noise_const")


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds, read safely: the generator to use and everything beside it."""

    path: Path
    kind: str  # file format: nvidia-pickle | torch | safetensors
    layout: str  # a key of LAYOUTS
    networks: Tuple[str, ...]  # e.g. "G_ema (Generator, used)", "D (Discriminator, skipped)"
    kwargs: dict  # the generator's kwargs as the file gives them (NVIDIA names)
    config: Optional[GeneratorConfig]  # None when refused
    refusal: Optional[str]  # one line: why this generator cannot load
    state_dict: Optional[Dict[str, torch.Tensor]]

    def require(self) -> Tuple[GeneratorConfig, Dict[str, torch.Tensor]]:
        """(config, state dict), or the one-line refusal."""
        if self.refusal or self.config is None or self.state_dict is None:
            raise CheckpointError(self.refusal or f"{self.path}: no generator")
        return self.config, self.state_dict

    @property
    def parameter_count(self) -> Optional[int]:
        """Learned values of the generator (parameters; buffers such as w_avg and noise not counted)."""
        if self.state_dict is None:
            return None
        return int(sum(v.numel() for k, v in self.state_dict.items() if k.rsplit(".", 1)[-1] not in _BUFFERS))


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


def _normalised(where: str, kwargs: dict) -> Tuple[Optional[GeneratorConfig], Optional[str]]:
    try:
        return normalise_config(kwargs, where), None
    except CheckpointError as exc:
        return None, str(exc)


def _describe(name: str, value: object, used: str) -> str:
    if isinstance(value, PersistentRecord):
        return f"{name} ({value.class_name}, {'used' if name == used else 'skipped'})"
    return f"{name} ({type(value).__name__ if value is not None else 'None'}, skipped)"


def _read_nvidia_pickle(path: Path) -> Checkpoint:
    data = path.read_bytes()
    if first_global(data) == TF_NETWORK:
        return _read_tf_pickle(path, data)
    obj = load_network_pickle(data)
    rec = obj.get("G_ema")
    if not isinstance(rec, PersistentRecord):
        have = ", ".join(sorted(str(k) for k in obj)) or "nothing"
        raise CheckpointError(f"{path}: the pickle has no G_ema network (it has: {have})")
    networks = tuple(_describe(str(k), v, "G_ema") for k, v in obj.items())
    kwargs, sd = rec.init_kwargs(), rec.state_dict()
    if is_stylegan3(kwargs) or any(k.startswith("synthesis.input.") for k in sd):
        layout = "stylegan3"
    else:
        layout = "stylegan2-ada" if "synthesis_kwargs" in kwargs else "ngc"
    config, refusal = _normalised(str(path), kwargs)
    return Checkpoint(path, "nvidia-pickle", layout, networks, kwargs, config, refusal, sd)


def _read_tf_pickle(path: Path, data: bytes) -> Checkpoint:
    where = str(path)
    nets = load_tf_pickle(data, where)
    networks = tuple(
        f"{role} (TensorFlow {net.name}, {'used' if role == 'Gs' else 'skipped'})" for role, net in nets.items()
    )
    gs = nets.get("Gs")
    kwargs: dict = {}
    config = sd = refusal = None
    try:
        if gs is None:
            raise CheckpointError(f"{where}: the TensorFlow pickle has no Gs generator")
        kwargs = tf_kwargs_to_nvidia(gs.static_kwargs, where)
        config, sd = tf_generator_state(nets, where)
    except CheckpointError as exc:
        refusal = str(exc)
    return Checkpoint(path, "nvidia-pickle", "tensorflow", networks, kwargs, config, refusal, sd)


def _torch_refusal(path: Path, exc: Exception) -> CheckpointError:
    """One line on what the file is, without torch's advice to load it unsafely."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return CheckpointError(
            f"refusing {path}: it is a pickle that asks for {found.group(1)}, which is not "
            "tensor data (it could run code); it is not a plain tensor checkpoint"
        )
    return CheckpointError(
        f"refusing {path}: not a readable PyTorch checkpoint of plain tensor data ({type(exc).__name__})"
    )


def _read_torch(path: Path) -> Checkpoint:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _torch_refusal(path, exc) from None
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        raise CheckpointError(f"{path} has no 'g_ema' generator (expected a rosinality stylegan2-pytorch checkpoint)")
    networks = tuple(f"{k} ({'used' if k == 'g_ema' else 'skipped'})" for k in ckpt)
    kwargs, sd = rosinality_to_nvidia(ckpt["g_ema"], ckpt.get("latent_avg"))
    config, refusal = _normalised(str(path), kwargs)
    return Checkpoint(path, "torch", "rosinality", networks, kwargs, config, refusal, sd)


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        sd = load_file(str(path))
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is a corrupt safetensors file ({exc})") from None
    if "init_kwargs" not in meta:
        raise CheckpointError(f"{path} has no generator init_kwargs in its metadata")
    try:
        kwargs = json.loads(meta["init_kwargs"])
    except ValueError:
        raise CheckpointError(f"{path} has unreadable init_kwargs metadata") from None
    config, refusal = _normalised(str(path), kwargs)
    return Checkpoint(
        path,
        "safetensors",
        "photodrag",
        ("generator (used)",),
        kwargs,
        config,
        refusal,
        {k: v.float() for k, v in sd.items()},
    )


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read any supported checkpoint safely; a hostile or unreadable file is a one-line error."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "nvidia-pickle":
        return _read_nvidia_pickle(path)
    if kind == "torch":
        return _read_torch(path)
    return _read_safetensors(path)


def read_generator_state(path: PathLike) -> Tuple[dict, Dict[str, torch.Tensor], str]:
    """(our init kwargs, NVIDIA-named state dict, source format) of the generator in `path`."""
    ckpt = read_checkpoint(path)
    config, sd = ckpt.require()
    return config.to_init_kwargs(), sd, ckpt.kind


def check_state_dict(G: Generator, state_dict: Dict[str, torch.Tensor]) -> None:
    """Every key of G present with G's shape, nothing else; a one-line error naming the first misfit."""
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        more = "..." if len(missing) > 3 else ""
        raise CheckpointError(
            f"generator weights do not fit: missing {missing[:3]}{more}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    for key, ref in expected.items():
        if tuple(state_dict[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"generator weight {key} has shape {list(state_dict[key].shape)}, expected {list(ref.shape)}"
            )


def build_generator(init_kwargs: dict, state_dict: Dict[str, torch.Tensor]) -> Generator:
    """Our Generator with exactly the given weights; any key or shape mismatch is a clear error."""
    try:
        G = Generator(**init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"unsupported generator configuration: {exc}") from None
    check_state_dict(G, state_dict)
    G.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()})
    return G.eval().requires_grad_(False)


def load_generator(path: PathLike, device: Union[str, torch.device] = "cpu") -> Generator:
    """Load any supported generator checkpoint, in eval mode with frozen weights."""
    kwargs, sd, _ = read_generator_state(path)
    return build_generator(kwargs, sd).to(device)


def save_generator(G: Generator, path: PathLike, fp16: bool = False) -> None:
    """Write G as safetensors (optionally fp16 weights) with the init kwargs as JSON, atomically."""
    sd = {
        k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in G.state_dict().items()
    }
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "init_kwargs": json.dumps(G.init_kwargs)}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)
