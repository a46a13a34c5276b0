"""Face detection and 68 landmarks with dlib (HOG frontal detector + shape predictor).

Models are loaded once per process.  Detection runs on a downscaled copy of large
photos (it only needs the face boxes), landmarks on the full-resolution photo.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from common.errors import MissingWeightsError

DETECT_MAX_SIDE = 1200   # detection works on a copy no larger than this
MIN_DETECT_SIDE = 900    # below this (after downscaling) the detector also runs 2x up-sampled


@dataclass(frozen=True)
class Face:
    """A detected face: box (left, top, right, bottom) in photo pixels, detector score, landmarks."""

    box: Tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # 68 x 2, photo pixels (x, y)

    @property
    def size(self) -> float:
        left, top, right, bottom = self.box
        return float(np.sqrt(max(right - left, 1) * max(bottom - top, 1)))


@functools.lru_cache(maxsize=1)
def _detector():
    import dlib
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _predictor():
    import dlib

    from weights.registry import get_entry
    from weights.store import package_file
    entry = get_entry("dlib-landmarks-68")
    path = package_file(entry)
    if path is None or not path.is_file():
        raise MissingWeightsError(f"missing weights {entry.name} ({entry.filename}); "
                                  "install it with `pip install face-recognition-models`")
    return dlib.shape_predictor(str(path))


def detect_boxes(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> List[Tuple[Tuple[float, ...], float]]:
    """[(box in photo pixels, score)], best score first."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                interpolation=cv2.INTER_AREA)
    upsample = 1 if max(small.shape[:2]) < MIN_DETECT_SIDE else 0
    rects, scores, _ = _detector().run(np.ascontiguousarray(small), upsample, 0.0)
    sx, sy = w / small.shape[1], h / small.shape[0]
    out = []
    for r, s in zip(rects, scores):
        box = (r.left() * sx, r.top() * sy, (r.right() + 1) * sx, (r.bottom() + 1) * sy)
        out.append((box, float(s)))
    out.sort(key=lambda t: -t[1])
    return out


def landmarks(rgb: np.ndarray, box: Tuple[float, float, float, float]) -> np.ndarray:
    """68 (x, y) landmarks inside `box`, predicted on the full-resolution photo."""
    import dlib
    left, top, right, bottom = (int(round(v)) for v in box)
    shape = _predictor()(np.ascontiguousarray(rgb), dlib.rectangle(left, top, right - 1, bottom - 1))
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)


def find_faces(rgb: np.ndarray) -> List[Face]:
    """Every face in the photo with its landmarks, in detector order (best score first)."""
    return [Face(box, score, landmarks(rgb, box)) for box, score in detect_boxes(rgb)]
