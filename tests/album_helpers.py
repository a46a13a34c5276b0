"""Album test set-up shared by the local and the Ray tests: a tiny model, a recipe, the photos,
and networks that Ray workers can build on their own (deterministic random-backbone LPIPS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import PORTRAIT, faceless_photo, mirrored_portrait, random_lpips, tiny_generator
from pipeline.models import LoadedModels

FACES = ["astronaut_edited.jpg", "mirrored_edited.jpg"]  # the outputs of album_photos' two faces
FACELESS = "faceless_edited.jpg"


def album_photos(folder: Path) -> list:
    """Two face photos (the packaged portrait and its mirror image) and one without a face."""
    return [PORTRAIT, mirrored_portrait(folder), faceless_photo(folder)]


class RandomLpipsModels(LoadedModels):
    """LoadedModels with seeded random-backbone LPIPS (helpers.random_lpips): the same nets in every
    process, no downloads; a class, so a Ray worker can build one."""

    def __init__(self) -> None:
        super().__init__(lpips=random_lpips)


class CrashOnceModels(RandomLpipsModels):
    """Kills its worker process on the first photo any worker starts (the marker file makes it once)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def generator(self, model_path, device):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().generator(model_path, device)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


def write_model(path: Path) -> Path:
    from weights.checkpoint import save_generator

    save_generator(tiny_generator(res=64, dim=32), path)
    return path


def album_recipe(model: Path, **over) -> dict:
    r = {
        "model": str(model),
        "coords": "aligned",
        "drags": [{"handle": [38, 45], "target": [40, 43]}],
        "invert": {"projection_steps": 4, "tuning_steps": 2, "lpips_threshold": 0.0},
        "drag": {"steps": 3},
    }
    r.update(over)
    return r


def write_recipe(path: Path, model: Path, **over) -> Path:
    path.write_text(json.dumps(album_recipe(model, **over)))
    return path
