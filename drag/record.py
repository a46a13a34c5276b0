"""drag.json as a typed record: the points, where they ended, and the drag's freshness rule."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import numpy as np

from common.record import StageRecord

# drag.json "stop_reason": why the drag ended, exactly the values drag/engine.py and drag/stage.py
# set (tests/test_drag.py checks the two agree).  The engine checks the first three in this order
# after tracking, each step; run_drag checks should_stop() before each step.
STOP_REASONS: Dict[str, str] = {
    "reached": "every handle is within DragConfig.reach px of its target (reach_many px when more than "
    "reach_few points are dragged)",
    "max_steps": "DragConfig.steps optimisation steps were taken",
    "stalled": "the total distance to the targets improved by less than DragConfig.stall_min_gain px "
    "over the last stall_steps steps",
    "stopped": "the caller's should_stop() ended the drag early (run_drag; the web editor's stop)",
}


def drag_request(
    pts: np.ndarray, mask: Optional[np.ndarray], config, presets: Optional[Mapping[str, float]] = None
) -> dict:
    """What a drag was made for (drag.json "request"): its freshness key (presets only when given)."""
    request = {
        "points": np.round(pts, 4).tolist(),
        "mask_sha256": None if mask is None else hashlib.sha256(mask.astype(np.uint8).tobytes()).hexdigest(),
        "config": dataclasses.asdict(config),
    }
    if presets:
        request["presets"] = dict(presets)
    return request


@dataclass(frozen=True)
class DragRecord(StageRecord):
    STAGE = "drag"
    FILE = "drag.json"
    UPSTREAM = ("invert/invert.json", "invert_sha256")  # made from the current inversion
    STALE = "{stage} was made from another inversion; re-run drag"

    @property
    def invert_sha256(self) -> Optional[str]:
        return self.data.get("invert_sha256")

    @property
    def stop_reason(self) -> str:
        """One of STOP_REASONS."""
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
        return [
            q
            for p in self.data["points"]
            for q in (p["aligned"]["handle"], p["aligned"]["target"], p["aligned"]["final"])
        ]

    @property
    def identity_distance(self) -> Optional[float]:
        return self.data.get("identity", {}).get("distance")

    @property
    def presets(self) -> Optional[dict]:
        """Preset amounts, whether the edited face was found again, and per preset the requested and
        achieved motion ({name: {"amount", "requested": {"iod", "px"}, "achieved": {"iod", "px",
        "vector_px"}}}); None when the drag had no presets."""
        return self.data.get("presets")

    def preset_table(self) -> List[str]:
        """The requested vs achieved lines for summaries (empty without presets)."""
        report = self.presets
        if not report:
            return []
        if not report.get("face_found"):
            return [
                f"presets {', '.join(f'{n}={a:g}' for n, a in report['amounts'].items())}: "
                f"no face detected again on the edited image, achieved motion not measured"
            ]
        rows: Dict[str, dict] = report["measured"]
        out = [f"  {'preset':11s} {'amount':>7s} {'requested':>18s} {'achieved':>18s}"]
        for name, m in rows.items():
            req, ach = m["requested"], m["achieved"]
            out.append(
                f"  {name:11s} {m['amount']:7.2f} {req['iod']:7.3f} IOD {req['px']:5.1f} px "
                f"{ach['iod']:7.3f} IOD {ach['px']:5.1f} px"
            )
        return out

    def is_fresh(self, request: dict) -> bool:
        """Made for these points, mask and options (the inversion is checked by `read_intact`)."""
        return self.data.get("request") == request

    def warnings(self) -> List[str]:
        """Identity drift after the drag, for the command line and the edit summary."""
        ident = self.data.get("identity", {})
        if ident.get("skipped"):
            return []
        if ident.get("distance") is None:
            return [f"no face was found in the edited image ({ident.get('note', '')}); check drag/preview.png"]
        if not ident.get("same_person"):
            return [
                f"the edited face may no longer look like the same person (identity distance "
                f"{ident['distance']:.2f} >= {ident['threshold']}); likely: "
                "a poor inversion (a low-resolution or random-weight generator first; see invert/compare.png), "
                "or drags too large for one edit"
            ]
        return []


def stop_line(reason: Optional[str], steps: int) -> str:
    """How a drag ended, in words: a drag that reached its targets without a step says so plainly."""
    if reason == "reached" and steps == 0:
        return "0 steps: the handles were already within the stop distance of their targets"
    return f"drag stopped ({reason}) after {steps} steps"
