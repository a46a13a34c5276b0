"""Turn a `--model` value (registry name or file path) into a checkpoint path, and `ChosenModel`, its record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import torch

from common.errors import UsageError
from weights.checkpoint import load_generator
from weights.networks import Generator
from weights.registry import DEFAULT_MODEL, GENERATOR, REGISTRY
from weights.store import WeightStore

GENERATOR_NAMES = tuple(n for n, e in REGISTRY.items() if e.kind == GENERATOR)


def resolve_model_path(model: str, store: WeightStore, fetch: bool = True) -> Path:
    """A registry generator name (fetched on first use) or an existing checkpoint file."""
    if model in REGISTRY:
        if REGISTRY[model].kind != GENERATOR:
            raise UsageError(f"{model} is not a generator; choose one of {', '.join(GENERATOR_NAMES)} or a file")
        return store.require(model, fetch=fetch)
    path = Path(model).expanduser()
    if path.is_file():
        return path
    raise UsageError(
        f"--model {model!r} is neither a generator name ({', '.join(GENERATOR_NAMES)}) "
        "nor an existing .pkl/.pt/.safetensors file"
    )


def load_model(model: str, store: WeightStore, device: torch.device, fetch: bool = True) -> Tuple[Generator, Path]:
    path = resolve_model_path(model, store, fetch=fetch)
    return load_generator(path, device), path


def model_for(model, size) -> str:
    """The model an edit uses: the one named, else the registry generator of `size`, else the default."""
    return model or (f"ffhq-{size}" if size and f"ffhq-{size}" in REGISTRY else DEFAULT_MODEL)


@dataclass(frozen=True)
class ChosenModel:
    """The generator a run uses, as every stage records it: the name given (registry name or file
    path), the file, its sha256 (what the inversion cache and records key on) and its resolution."""

    name: str
    path: Path
    sha256: str
    resolution: int
