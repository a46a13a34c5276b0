"""Face detection and 68 landmarks with dlib (HOG frontal detector + shape predictor).

Models are loaded once, by `FaceModels`.  Detection runs on a downscaled copy of large
photos (it only needs the face boxes), landmarks on the full-resolution photo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import dlib
import numpy as np

from common.errors import MissingWeightsError
from weights.registry import FACE_RECOGNITION, LANDMARKS, get_entry
from weights.store import package_file

DETECT_MAX_SIDE = 1200  # detection works on a copy no larger than this
MIN_DETECT_SIDE = 900  # below this (after downscaling) the detector also runs 2x up-sampled


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


class FaceModels:
    """dlib's detector, 68-point predictor and face recogniser, each loaded on first use and then kept.

    The one loader of these files: detection, landmarks and identity all use `FACE_MODELS`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: Dict[str, object] = {}

    def _get(self, name: str, load):
        with self._lock:
            if name not in self._models:
                self._models[name] = load()
            return self._models[name]

    def detector(self):
        return self._get("detector", dlib.get_frontal_face_detector)

    def predictor(self):
        return self._get("predictor", lambda: dlib.shape_predictor(_weights_file(LANDMARKS)))

    def recognizer(self):
        return self._get("recognizer", lambda: dlib.face_recognition_model_v1(_weights_file(FACE_RECOGNITION)))


def _weights_file(name: str) -> str:
    entry = get_entry(name)
    path = package_file(entry)
    if path is None or not path.is_file():
        raise MissingWeightsError(
            f"missing weights {entry.name} ({entry.filename}); install it with `pip install face-recognition-models`"
        )
    return str(path)


FACE_MODELS = FaceModels()


def detect_boxes(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> List[Tuple[Tuple[float, ...], float]]:
    """[(box in photo pixels, score)], best score first."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = (
        rgb
        if scale == 1.0
        else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    )
    upsample = 1 if max(small.shape[:2]) < MIN_DETECT_SIDE else 0
    rects, scores, _ = FACE_MODELS.detector().run(np.ascontiguousarray(small), upsample, 0.0)
    sx, sy = w / small.shape[1], h / small.shape[0]
    out = []
    for r, s in zip(rects, scores):
        box = (r.left() * sx, r.top() * sy, (r.right() + 1) * sx, (r.bottom() + 1) * sy)
        out.append((box, float(s)))
    out.sort(key=lambda t: -t[1])
    return out


def landmarks(rgb: np.ndarray, box: Tuple[float, float, float, float]) -> np.ndarray:
    """68 (x, y) landmarks inside `box`, predicted on the full-resolution photo."""
    left, top, right, bottom = (int(round(v)) for v in box)
    shape = FACE_MODELS.predictor()(np.ascontiguousarray(rgb), dlib.rectangle(left, top, right - 1, bottom - 1))
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)


def find_faces(rgb: np.ndarray) -> List[Face]:
    """Every face in the photo with its landmarks, in detector order (best score first)."""
    return [Face(box, score, landmarks(rgb, box)) for box, score in detect_boxes(rgb)]
