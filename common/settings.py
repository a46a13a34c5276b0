"""Where photodrag keeps its files, and which torch device it uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from common.errors import UsageError

HOME_ENV = "PHOTODRAG_HOME"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def home_dir(override: Optional[str] = None) -> Path:
    """The folder for weights and caches: `override`, else $PHOTODRAG_HOME, else the user cache."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "photodrag"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` without a GPU is a usage error."""
    if name not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)
