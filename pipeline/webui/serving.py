"""What `photodrag serve` sets up before the web server starts: the session manager, whose
sessions share one generator, the LPIPS networks and the inversion cache.

Kept apart from app.py so it imports without the web stack (fastapi/uvicorn are an optional extra).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Sequence

from inversion.cache import InversionCache
from inversion.config import InversionConfig
from pipeline.composite import DEFAULT_BLEND
from pipeline.models import LoadedModels, open_models
from pipeline.webui.guard import WILDCARDS, served_hosts
from pipeline.webui.session import Limits, Services, SessionManager
from weights.store import WeightStore


def build_manager(
    home: Path,
    device,
    store: WeightStore,
    cache: InversionCache,
    model: str,
    models: LoadedModels,
    inversion_config=None,
    drag_config=None,
    limits: Limits = Limits(),
    blend: str = DEFAULT_BLEND,
) -> SessionManager:
    """Sessions sharing one model, the LPIPS networks and the inversion cache (checked up front)."""

    config = inversion_config or InversionConfig()
    opened = open_models(model, store, device, config.perceptual_nets(), loaded=models)  # every missing file at once
    opened.generator()  # loaded here, before the server's threads, and shared by every session
    for net, r in config.perceptual_nets():
        opened.perceptual(net, r)
    services = Services(opened, cache, config, drag_config=drag_config, blend=blend)
    return SessionManager(home / "ui", services, limits)


def serve_limits(base: Limits, max_sessions: int, max_megapixels: float, idle_minutes: float) -> Limits:
    """`base` with serve's --max-sessions, --max-megapixels and --idle-minutes."""
    return replace(base, max_sessions=max_sessions, max_pixels=int(max_megapixels * 1e6), idle_drop_s=idle_minutes * 60)


def host_warnings(host: str, port: int, allow_hosts: Sequence[str]) -> List[str]:
    """What to say before listening on a non-loopback address, or on a wildcard with no --allow-host."""
    out = []
    if host not in ("127.0.0.1", "localhost", "::1"):
        out.append(f"listening on {host}: anyone who can reach it can use the editor")
    if host in WILDCARDS and not allow_hosts:
        out.append(
            f"only requests to {', '.join(served_hosts(host, port))} are answered; "
            "name this computer's address with --allow-host"
        )
    return out
