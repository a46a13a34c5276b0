"""align.json as a typed record: what the align stage made, from what, and its freshness rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from common.geometry import apply_matrix
from common.record import StageRecord


@dataclass(frozen=True)
class AlignRecord(StageRecord):
    STAGE = "align"
    FILE = "align.json"

    @property
    def photo_path(self) -> Path:
        return Path(self.data["photo"]["path"])

    @property
    def photo_sha256(self) -> str:
        return self.data["photo"]["sha256"]

    @property
    def photo_size(self) -> Tuple[int, int]:
        return int(self.data["photo"]["width"]), int(self.data["photo"]["height"])

    @property
    def size(self) -> int:
        return int(self.data["size"])

    @property
    def face_index(self) -> int:
        return int(self.data["face_index"])

    @property
    def aligned_sha256(self):
        return self.data.get("aligned_sha256")

    @property
    def matrix(self) -> np.ndarray:
        """3x3 photo -> aligned."""
        return np.array(self.data["matrix"])

    @property
    def inverse(self) -> np.ndarray:
        """3x3 aligned -> photo."""
        return np.array(self.data["inverse"])

    @property
    def landmarks(self) -> np.ndarray:
        """The chosen face's 68 landmarks in photo pixels."""
        return np.asarray(self.data["landmarks"])

    @property
    def has_landmarks(self) -> bool:
        """Whether align.json holds the face's landmarks and matrix (presets need them)."""
        return "landmarks" in self.data and "matrix" in self.data

    @property
    def aligned_landmarks(self) -> np.ndarray:
        """The same landmarks in aligned pixels."""
        return apply_matrix(self.data["matrix"], self.data["landmarks"])

    @property
    def quad(self) -> np.ndarray:
        return np.asarray(self.data["quad"], dtype=np.float64)

    @property
    def crop_px(self) -> float:
        """Side of the FFHQ crop in photo pixels (how big the face is)."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]))

    @property
    def warnings(self) -> List[str]:
        return list(self.data.get("warnings", []))

    def is_fresh(self, photo_sha256: str, size: int, face) -> bool:
        """Made from this photo, at this size, for this face request."""
        return (
            self.photo_sha256 == photo_sha256
            and self.data.get("size") == size
            and self.data.get("face_request") == face
        )

    def describe(self) -> str:
        """One line on the chosen face for summaries: its box in the photo and how the crop is scaled."""
        l, t, r, b = self.data["box"]
        small = " (small: see the warning)" if any("small face" in w for w in self.warnings) else ""
        return (
            f"{r - l:.0f}x{b - t:.0f} px in the photo (face {self.face_index}); crop {self.crop_px:.0f} px "
            f"-> {self.size} px{small}"
        )
