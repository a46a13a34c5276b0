"""What `photodrag serve` sets up before the web server starts: the session manager, whose
sessions share one generator, the LPIPS networks and the inversion cache.

Kept apart from app.py so it imports without the web stack (fastapi/uvicorn are an optional extra).
"""

from __future__ import annotations

from pathlib import Path

import inversion.perceptual as perceptual_nets
from inversion.cache import InversionCache
from inversion.config import InversionConfig
from pipeline.composite import DEFAULT_BLEND
from pipeline.webui.session import Limits, Services, SessionManager
from weights.checkpoint import load_generator
from weights.models import checkpoint_sha256, resolve_model_path
from weights.store import WeightStore


def build_manager(
    home: Path,
    device,
    store: WeightStore,
    cache: InversionCache,
    model: str,
    perceptual=None,
    inversion_config=None,
    drag_config=None,
    limits: Limits = Limits(),
    blend: str = DEFAULT_BLEND,
) -> SessionManager:
    """Sessions sharing one model, the LPIPS networks and the inversion cache (checked up front)."""

    path = resolve_model_path(model, store)
    config = inversion_config or InversionConfig()
    if perceptual is None:
        nets = {
            (net, r): perceptual_nets.load_perceptual(net, store, r).to(device) for net, r in config.perceptual_nets()
        }
        perceptual = lambda net, r: nets[(net, r)]
    G = load_generator(path, device)  # loaded here, before the server's threads, and shared by every session
    services = Services(
        model_name=model,
        model_path=path,
        model_sha256=checkpoint_sha256(path),
        resolution=G.img_resolution,
        device=device,
        cache=cache,
        perceptual=perceptual,
        inversion_config=config,
        drag_config=drag_config,
        blend=blend,
        _G=G,
    )
    return SessionManager(home / "ui", services, limits)
