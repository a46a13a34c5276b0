"""The web editor's "start from a seed" (DragGAN's own workflow): a session whose picture is a
generated one, dragged in W+ or W, with no photo and so no composite.

The start is pipeline/seeded.py's (inversion/seed.py writes RUN/invert/ as `photodrag seed` does);
jobs, points, mask, Stop and Undo are the photo session's (pipeline/webui/session.py).  The
downloads are the edited picture (PNG, the bytes `edit --recipe` makes from the recipe), its
latent (safetensors) and the recipe.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, Mapping, Optional

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from common.errors import UsageError
from drag.config import LATENTS, DragConfig
from drag.frame import load_frame
from drag.points import DragPair, map_to_aligned
from inversion.record import InversionRecord
from inversion.seed import render
from inversion.stage import load_inversion
from pipeline.models import OpenModels
from pipeline.seeded import check_seed, may_draw_faces, seed_opened, seed_recipe
from pipeline.webui.session import FaceState, Progress, Services, Session, SessionManager
from weights.models import GENERATOR_NAMES
from weights.registry import REGISTRY

SERVED = "served"  # the id of the model `serve --model` names, when it is not a registry name


def served_id(services: Services) -> str:
    name = services.model_name
    return name if name in REGISTRY else SERVED


def installed_models(services: Services) -> List[dict]:
    """The generators a seed can start from: the served one, then every registry generator in the store."""
    chosen = services.models.chosen
    served = served_id(services)
    out = [_entry(served, Path(chosen.name).name, chosen.resolution)]
    out += [_entry(n, n, REGISTRY[n].resolution) for n in GENERATOR_NAMES if n != served and services.installed(n)]
    return out


def _entry(model_id: str, label: str, resolution: int) -> dict:
    entry = REGISTRY.get(model_id)
    subject = entry.subject if entry is not None else None
    return {"id": model_id, "label": label, "resolution": resolution, "subject": subject}


def open_seed_model(services: Services, model_id: str) -> OpenModels:
    """The opened generator of an id that installed_models lists (never a path: 400 otherwise)."""
    if model_id == served_id(services):
        return services.models
    if not services.installed(model_id):
        known = ", ".join(m["id"] for m in installed_models(services))
        raise UsageError(f"model {model_id!r} is not installed on this server; choose one of: {known}")
    return services.open_installed(model_id, landmarks=may_draw_faces(model_id))


class SeedSession(Session):
    """A generated picture of `opened` for `seed` and `psi`, dragged in `latent` (W+ or W)."""

    def __init__(
        self, sid: str, folder: Path, services: Services, opened: OpenModels, seed: int, psi: float, latent: str
    ) -> None:
        self._begin(sid, folder, services, "generating")
        self.opened, self.seed, self.psi, self.latent = opened, seed, psi, latent
        self.size = int(opened.chosen.resolution)
        self.photo, self.faces, self.frame_info = None, [], None
        self._frame = self._encode(np.zeros((self.size, self.size, 3), np.uint8))
        self._start("generating", self._generate)

    @property
    def picture_size(self) -> tuple:
        return (self.size, self.size)

    @property
    def inverse(self) -> np.ndarray:
        return np.eye(3)  # a seed run's drag pixels are the picture's

    def _generate(self) -> None:
        self.progress = Progress("generate", 0, 1)
        seed_opened(self.run_root, self.opened, self.seed, self.psi)
        w_pivot, self.G, _ = load_inversion(self.run_root, self.services.device)
        self.frame_info = load_frame(self.run_root)
        self.edits[0] = self.face = FaceState(0, self.run_root, w_pivot)  # the picture is the session's one "face"
        self._show(self.w_pivot)
        self.progress = Progress("generate", 1, 1)
        self.state = "ready"

    def _composited(self, w: torch.Tensor, points_aligned=(), display: bool = False, live: bool = False) -> np.ndarray:
        """The generated picture of `w` itself: there is no photo to put it back into."""
        rgb = render(self.G, w)
        return self._display(rgb) if display else rgb

    def _request(self, pairs: List[DragPair], mask_path: Optional[Path], presets: Mapping[str, float]):
        """The picture's own pixels (the mapper `drag` uses on a seed run); presets only with a face."""
        if self.w_pivot is None:
            raise UsageError("wait for the seed's picture first")
        frame = self.frame_info
        frame.check_presets(presets, self.run_dir)
        return map_to_aligned(
            pairs,
            "photo",
            frame.matrix,
            frame.size,
            frame.photo_size,
            mask_path=mask_path,
            presets=dict(presets),
            landmarks=frame.landmarks,
        )

    def choose_face(self, index: int) -> None:
        raise UsageError("a seed's picture needs no face: drag points on it")

    def start_drag(self, drags, mask_png, settings: Mapping[str, float], presets=None) -> None:
        """The photo session's drag round, in the session's latent space."""
        super().start_drag(drags, mask_png, {**settings, "latent": self.latent}, presets)

    def status(self) -> dict:
        out = super().status()
        out.update(kind="seed", seed=self.seed, psi=self.psi, latent=self.latent)
        return out

    # downloads ---------------------------------------------------------------------------------
    def result(self) -> tuple:
        """(bytes, file name, media type) of the edited picture as PNG (drag/edited.png's encoding)."""
        if self.w_pivot is None:
            raise UsageError("nothing to download yet")
        buf = io.BytesIO()
        Image.fromarray(render(self.G, self._current_w())).save(buf, format="PNG")
        return buf.getvalue(), f"seed{self.seed}-edited.png", "image/png"

    def latent_file(self) -> bytes:
        """The current latent w [1, num_ws, w_dim] as safetensors ("w", as drag/w_edited.safetensors)."""
        if self.w_pivot is None:
            raise UsageError("nothing to download yet")
        return safetensors_bytes({"w": self._current_w().detach().cpu().contiguous()})

    def recipe(self) -> dict:
        """What `photodrag edit --recipe` replays to the same PNG: model, seed, psi, the round's drags,
        mask (mask.png next to the recipe) and options."""
        if len(self.rounds) != 1:
            raise UsageError(
                "a recipe replays one round of drags from the seed's picture: "
                f"this session has {len(self.rounds)}; reset and drag once to get one"
            )
        round_ = self.rounds[0]
        record = InversionRecord.load(self.run_dir)
        config = DragConfig(**round_["drag"], latent=round_["latent"])
        pairs = [DragPair(tuple(d["handle"]), tuple(d["target"])) for d in round_["drags"]]
        out = seed_recipe(record, pairs, "photo", None, None, config, round_["presets"])
        if round_.get("mask_png") is not None:
            out["mask"] = {"path": "mask.png"}  # the download next to the recipe
        return out


def create_seed_session(manager: SessionManager, model_id: str, seed: int, psi: float, latent: str) -> SeedSession:
    """A seed session in a free slot (checked first: a bad value is a 400, not a job error)."""
    check_seed(seed, psi)
    if latent not in LATENTS:
        raise UsageError(f"latent must be one of {', '.join(LATENTS)}, not {latent!r}")
    services = manager.services
    opened = open_seed_model(services, model_id)
    size = int(opened.chosen.resolution)
    return manager.add(size * size, lambda sid, folder: SeedSession(sid, folder, services, opened, seed, psi, latent))
