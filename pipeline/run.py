"""The run folder: where each stage's files live, and reading them with clear errors.

RUN_DIR/align/   aligned.png  align.json  preview.png
RUN_DIR/invert/  pivot.safetensors  generator.safetensors | generator.json  invert.json  ...
RUN_DIR/drag/    edited.png  w_edited.safetensors  drag.json  preview.png
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import UsageError

STAGE_COMMANDS = {"align": "photodrag align PHOTO --out {run}", "invert": "photodrag invert {run}",
                  "drag": "photodrag drag {run} --drag ..."}


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def stage(self, name: str) -> Path:
        return self.path / name

    def require(self, stage: str, filename: str) -> Path:
        """Path of a stage file that must exist, else a message saying which command makes it."""
        f = self.stage(stage) / filename
        if not f.is_file():
            how = STAGE_COMMANDS.get(stage, stage).format(run=self.path)
            raise UsageError(f"{f} is missing: run `{how}` first")
        return f

    def read_json(self, stage: str, filename: str) -> dict:
        f = self.require(stage, filename)
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{f} is unreadable ({exc}); re-run the {stage} stage") from None

    def read_image(self, stage: str, filename: str) -> np.ndarray:
        f = self.require(stage, filename)
        try:
            with Image.open(f) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise UsageError(f"{f} is unreadable ({exc}); re-run the {stage} stage") from None

    def file_sha256(self, stage: str, filename: str) -> str:
        return hashlib.sha256(self.require(stage, filename).read_bytes()).hexdigest()


def load_inversion(run_dir: Path, device="cpu"):
    """(pivot w [1, num_ws, w_dim], tuned generator, invert.json) of a finished inversion.

    Refuses an inversion made for another aligned image, or whose cached generator is gone.
    """
    import torch
    from safetensors import safe_open

    from weights.checkpoint import load_generator
    run = RunFolder(Path(run_dir))
    record = run.read_json("invert", "invert.json")
    if record.get("aligned_sha256") != run.file_sha256("align", "aligned.png"):
        raise UsageError(f"{run.stage('invert')} was made for another aligned image; "
                         f"re-run `photodrag invert {run.path}`")
    try:
        with safe_open(str(run.require("invert", "pivot.safetensors")), "pt", device=str(device)) as fh:
            w = fh.get_tensor("w")
    except Exception as exc:
        raise UsageError(f"{run.stage('invert')}/pivot.safetensors is unreadable ({exc}); re-run invert") from None
    pointer = run.stage("invert") / "generator.json"
    if pointer.is_file():
        from inversion.stage import (
            generator_problem,  # the stage that owns the files checks them
        )
        problem = generator_problem(run.path)
        if problem is not None:
            raise UsageError(f"the tuned generator of {run.stage('invert')}: {problem}; "
                             f"re-run `photodrag invert {run.path}`")
        path = Path(json.loads(pointer.read_text())["path"])
    else:
        path = run.require("invert", "generator.safetensors")
    return w.to(torch.float32), load_generator(path, device), record
