"""The two pictures written outside the stages: a generator's sample (`generate`) and the
presets' drags drawn on the face a drag works in (`presets --preview`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict

import torch
from PIL import Image

from common.errors import UsageError
from common.fileio import atomic_path
from common.run import RunFolder, locked_run
from drag.draw import preview_image
from drag.frame import load_frame
from weights.networks import to_uint8, z_from_seed


def check_sample(seed: int, psi: float, output: Path) -> None:
    """Refuse a seed outside [0, 2**32), a non-finite psi, or an output not named .png."""
    if seed < 0 or seed >= 2**32:
        raise UsageError("--seed must be in [0, 2**32)")
    if not math.isfinite(psi):
        raise UsageError(f"--trunc must be a finite number, not {psi}")
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: generate writes PNG; name the file .png")


def write_sample(G, seed: int, psi: float, noise_mode: str, output: Path, device) -> None:
    """G's image for z = RandomState(seed).randn(1, z_dim), as NVIDIA's generate.py makes it, to OUTPUT."""
    with torch.no_grad():
        img = G(z_from_seed(seed, G.z_dim).to(device), truncation_psi=psi, noise_mode=noise_mode)
    with atomic_path(output) as tmp:
        Image.fromarray(to_uint8(img)[0]).save(tmp, format="PNG")


def write_presets_preview(run_dir: Path, amounts: Dict[str, float], notify: Callable[[str], None]) -> Path:
    """RUN_DIR/presets_preview.png: the presets' drags and mask drawn on the picture a drag of RUN_DIR
    works in (drag/frame.py): the aligned face of a photo's run, the generated picture of a seed run
    (landmarks found in it by `seed`, as drag's presets use them).  Refused in one line, as drag
    refuses presets, where that picture has no face."""
    frame = load_frame(run_dir)
    frame.check_presets(amounts, run_dir)
    img = preview_image(RunFolder(run_dir).read_image(*frame.reference), frame.landmarks, amounts)
    out = run_dir / "presets_preview.png"
    with locked_run(run_dir, create=False, notify=notify):
        with atomic_path(out) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    return out
