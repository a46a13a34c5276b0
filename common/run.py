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

from common.errors import UsageError

STAGE_COMMANDS = {
    "align": "photodrag align PHOTO --out {run}",
    "invert": "photodrag invert {run}",
    "drag": "photodrag drag {run} --drag ...",
}


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
