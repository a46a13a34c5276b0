"""invert.json as a typed record, and the check that the tuned generator it names is still readable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.record import PathLike, StageRecord
from inversion.cache import check_entry
from inversion.config import InversionConfig

SEED_START = "seed"  # invert.json "start" kind of a run that began from a generator's seed (inversion/seed.py)


def generator_problem(run_dir: PathLike) -> Optional[str]:
    """None when the tuned generator is readable: the file itself, the intact cache entry it points to,
    or (a seed run) the model file it names."""
    folder = Path(run_dir) / "invert"
    pointer = folder / "generator.json"
    if not pointer.is_file():
        return None if (folder / "generator.safetensors").is_file() else "generator.safetensors is missing"
    try:
        found = json.loads(pointer.read_text())
        if "model" in found:
            return None if Path(found["model"]).is_file() else f"its model file {found['model']} is gone"
        path = Path(found["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return "generator.json is unreadable"
    if not path.is_file():
        return f"its cache entry is gone ({path.parent})"
    problem = check_entry(path.parent)
    return None if problem is None else f"its cache entry {path.parent.name[:12]} is damaged ({problem})"


@dataclass(frozen=True)
class InversionRecord(StageRecord):
    STAGE = "invert"
    FILE = "invert.json"

    UPSTREAM = ("align/aligned.png", "aligned_sha256")  # made for the current aligned image
    STALE = "{stage} was made for another aligned image; re-run `photodrag invert {run}`"

    @classmethod
    def load_fresh(cls, run_dir: PathLike) -> InversionRecord:
        """A seed run has no upstream stage: it is fresh as written."""
        record = cls.load(run_dir)
        return record if record.start is not None else super().load_fresh(run_dir)

    @property
    def start(self) -> Optional[dict]:
        """Where a run that did not begin from a photo began: {"kind": "seed", "seed", "psi", "subject",
        "note", "landmarks" (68 points of the picture's face, or None)}; None for a photo's inversion."""
        start = self.data.get("start")
        return start if isinstance(start, dict) and start.get("kind") == SEED_START else None

    @property
    def model_name(self) -> Optional[str]:
        return self.data.get("model", {}).get("name")

    @property
    def resolution(self) -> Optional[int]:
        return self.data.get("model", {}).get("resolution")

    def start_line(self) -> str:
        """Where the run began, in words (a seed run; photo runs are described by align.json)."""
        s = self.start or {}
        return f"seed {s.get('seed')} of {self.model_name} (psi {s.get('psi')})"

    @classmethod
    def read_intact(cls, run_dir: PathLike) -> Optional[InversionRecord]:
        """Also None when the tuned generator is gone or its cache entry is damaged."""
        record = super().read_intact(run_dir)
        return record if record is not None and generator_problem(run_dir) is None else None

    @property
    def aligned_sha256(self) -> Optional[str]:
        return self.data.get("aligned_sha256")

    @property
    def cache_hit(self) -> Optional[bool]:
        return self.data.get("cache", {}).get("hit")

    @property
    def tuned_noise_maps(self) -> Optional[str]:
        """The noise maps the generator was tuned with: "checkpoint" (PTI) or "projection"."""
        return self.data.get("tuning", {}).get("noise_maps")

    @property
    def stop_lpips_resolution(self) -> Optional[int]:
        """The image size the LPIPS of tuning's loss and stop rule saw."""
        return self.data.get("tuning", {}).get("stop_lpips", {}).get("resolution")

    @property
    def identity_distance(self) -> Optional[float]:
        return self.data.get("identity", {}).get("distance")

    def is_fresh(self, model_sha256: str, config: InversionConfig) -> bool:
        """Made with this model and these options (the aligned image is checked by `read_intact`)."""
        return self.data.get("model", {}).get("sha256") == model_sha256 and self.data.get("config") == json.loads(
            json.dumps(config.to_dict())
        )
