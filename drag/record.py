"""drag.json as a typed record: the points, where they ended, and the drag's freshness rule."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from common.fileio import sha256_file
from common.record import PathLike, StageRecord


def drag_request(pts: np.ndarray, mask: Optional[np.ndarray], config) -> dict:
    """What a drag was made for (drag.json "request"): its freshness key."""
    return {"points": np.round(pts, 4).tolist(),
            "mask_sha256": None if mask is None else hashlib.sha256(mask.astype(np.uint8).tobytes()).hexdigest(),
            "config": dataclasses.asdict(config)}


@dataclass(frozen=True)
class DragRecord(StageRecord):
    STAGE = "drag"
    FILE = "drag.json"

    @classmethod
    def read_intact(cls, run_dir: PathLike) -> Optional[DragRecord]:
        """Also None when made from another inversion than the current one."""
        record = super().read_intact(run_dir)
        try:
            invert_sha = sha256_file(Path(run_dir) / "invert" / "invert.json")
        except OSError:
            return None
        return record if record is not None and record.invert_sha256 == invert_sha else None

    @property
    def invert_sha256(self) -> Optional[str]:
        return self.data.get("invert_sha256")

    @property
    def stop_reason(self) -> str:
        return self.data["stop_reason"]

    @property
    def steps(self) -> int:
        return int(self.data["steps"])

    @property
    def distances_photo(self) -> List[float]:
        return [p["photo"]["distance"] for p in self.data["points"]]

    @property
    def mean_distance_photo(self) -> float:
        return float(self.data["mean_distance"]["photo"])

    @property
    def aligned_points(self) -> List[list]:
        """Handle, target and final position of every point, in aligned pixels."""
        return [q for p in self.data["points"] for q in (p["aligned"]["handle"], p["aligned"]["target"],
                                                          p["aligned"]["final"])]

    @property
    def identity_distance(self) -> Optional[float]:
        return self.data.get("identity", {}).get("distance")

    def is_fresh(self, request: dict) -> bool:
        """Made for these points, mask and options (the inversion is checked by `read_intact`)."""
        return self.data.get("request") == request

    def warnings(self) -> List[str]:
        """Identity drift after the drag, for the command line and the edit summary."""
        ident = self.data.get("identity", {})
        if ident.get("distance") is None:
            return [f"no face was found in the edited image ({ident.get('note', '')}); check drag/preview.png"]
        if not ident.get("same_person"):
            return [f"the edited face may no longer look like the same person (identity distance "
                    f"{ident['distance']:.2f} >= {ident['threshold']}); likely: drags too large for one edit, "
                    "or a poor inversion (see invert/compare.png)"]
        return []
