"""A generated start: RUN_DIR/invert/ made from a seed of a generator instead of a photo.

This is DragGAN's own workflow: w = mapping(z, psi) with z = RandomState(seed).randn(1, z_dim),
as NVIDIA's generate.py draws it, broadcast to every synthesis layer (W+, as DragGAN's GUI keeps
it).  Nothing is tuned: the generator is the model file itself, so the picture lies exactly on its
manifold.  The folder has the files `drag` reads from any inversion (pivot.safetensors with w,
generator.json naming the model file and its sha256, reconstruction.png, the generated picture)
and invert.json, whose "start" says where the run began (see InversionRecord.start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from common.fileio import atomic_dir, file_digests
from common.run import RunFolder
from inversion.api import Pivot
from inversion.record import SEED_START, InversionRecord
from weights.models import ChosenModel
from weights.networks import Generator, to_uint8, z_from_seed

FORMAT_VERSION = 1
FILES = ("pivot.safetensors", "generator.json", "reconstruction.png")
# a picture -> the 68 landmarks of its face, or None when it has none (presets need them)
FindLandmarks = Callable[[np.ndarray], Optional[np.ndarray]]


def seed_latent(G: Generator, seed: int, psi: float) -> torch.Tensor:
    """w [1, num_ws, w_dim] of `seed`: the mapping of NVIDIA's z for that seed, truncated by `psi`."""
    device = next(G.parameters()).device
    with torch.no_grad():
        return G.mapping(z_from_seed(seed, G.z_dim).to(device), truncation_psi=psi)


def render(G: Generator, w: torch.Tensor) -> np.ndarray:
    """The picture of `w` as the drag stage renders it (constant noise)."""
    with torch.no_grad():
        return to_uint8(G.synthesis(w, noise_mode="const"))[0]


def run_seed(
    run_dir: Path,
    G: Generator,
    chosen: ChosenModel,
    seed: int,
    psi: float,
    subject: Optional[str] = None,
    note: Optional[str] = None,
    find_landmarks: Optional[FindLandmarks] = None,
) -> InversionRecord:
    """Write RUN_DIR/invert/ for `seed` of `chosen` all at once; return its record.

    `subject` is what the model draws (None: unknown, a file); `find_landmarks` looks for a face
    in the picture (only called when the subject may be faces) so that presets can work."""
    run = RunFolder(Path(run_dir))
    w = seed_latent(G, seed, psi)
    picture = render(G, w)
    landmarks = find_landmarks(picture) if find_landmarks is not None else None
    start = {
        "kind": SEED_START,
        "seed": seed,
        "psi": psi,
        "z": "RandomState(seed).randn(1, z_dim), as NVIDIA's generate.py",
        "latent": f"W+: w = mapping(z, psi) repeated over {G.num_ws} layers",
        "subject": subject,
        "note": note,
        "landmarks": None if landmarks is None else np.asarray(landmarks, dtype=float).round(3).tolist(),
    }
    record = {
        "format_version": FORMAT_VERSION,
        "start": start,
        "model": {
            "name": chosen.name,
            "sha256": chosen.sha256,
            "resolution": G.img_resolution,
            "init_kwargs": G.init_kwargs,
        },
        "w_plus": True,
        "warnings": [],
    }
    with atomic_dir(run.stage("invert")) as tmp:
        Pivot(w=w).save(tmp / "pivot.safetensors")
        pointer = {"model": str(Path(chosen.path).resolve()), "sha256": chosen.sha256}
        (tmp / "generator.json").write_text(json.dumps(pointer, indent=2))
        Image.fromarray(picture).save(tmp / "reconstruction.png")
        record["files"] = file_digests(tmp, FILES)
        InversionRecord(record).save(tmp)
    return InversionRecord(record)
