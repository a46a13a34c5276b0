"""Quality you can see: identity (dlib face recognition) and face-region fidelity.

dlib's ResNet maps a face to a 128-d descriptor; two photos of the same person are
usually closer than SAME_PERSON (dlib's own rule of thumb).  Used to answer "does the
reconstruction look like me?" and "is the edited face still me?" in every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from align.detect import FACE_MODELS
from common.errors import UsageError

SAME_PERSON = 0.6  # dlib's threshold for its face recognition model


@dataclass(frozen=True)
class FaceDescriptor:
    vector: np.ndarray  # 128-d
    landmarks: np.ndarray  # 68 x 2 (x, y)
    box: tuple


def describe(rgb: np.ndarray, near: Optional[np.ndarray] = None) -> FaceDescriptor:
    """Descriptor of the face in `rgb` (the one nearest `near` (x, y) when several are found)."""
    detector, predictor, recognizer = FACE_MODELS.detector(), FACE_MODELS.predictor(), FACE_MODELS.recognizer()
    img = np.ascontiguousarray(rgb)
    rects = detector(img, 1)
    if len(rects) == 0:
        raise UsageError("no face found to compute an identity descriptor")
    if near is not None:
        centre = lambda r: np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
        rect = min(rects, key=lambda r: np.linalg.norm(centre(r) - near))
    else:
        rect = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(img, rect)
    vec = np.array(recognizer.compute_face_descriptor(img, shape))
    lm = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
    return FaceDescriptor(vec, lm, (rect.left(), rect.top(), rect.right(), rect.bottom()))


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between the descriptors of the main faces of two images."""
    da = describe(a)
    db = describe(b, near=np.array(da.landmarks.mean(0)) if a.shape == b.shape else None)
    return float(np.linalg.norm(da.vector - db.vector))


def face_region_mask(shape_hw, landmarks: np.ndarray) -> np.ndarray:
    """Boolean mask of the landmarks' convex hull (the face region)."""
    m = np.zeros(shape_hw, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.rint(landmarks).astype(np.int32)), 1)
    return m.astype(bool)


def face_region_mse(a: np.ndarray, b: np.ndarray, landmarks: np.ndarray) -> float:
    """MSE inside the face region, in [-1, 1] units like the generator's images."""
    m = face_region_mask(a.shape[:2], landmarks)
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 127.5
    return float(np.mean(diff[m] ** 2))


def yaw_ratio(landmarks: np.ndarray) -> float:
    """min/max of the nose tip's distances to the two face edges: 1 frontal, near 0 in profile."""
    lm = np.asarray(landmarks)
    left = np.linalg.norm(lm[30] - lm[0])
    right = np.linalg.norm(lm[30] - lm[16])
    return float(min(left, right) / max(left, right, 1e-6))


def identity_report(reference: np.ndarray, other: np.ndarray) -> dict:
    """{'distance', 'same_person', 'threshold'} for two aligned faces; a missing face is reported, not raised."""
    try:
        d = identity_distance(reference, other)
    except UsageError as exc:
        return {"distance": None, "same_person": None, "threshold": SAME_PERSON, "note": str(exc)}
    return {"distance": round(d, 4), "same_person": d < SAME_PERSON, "threshold": SAME_PERSON}
