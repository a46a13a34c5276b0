"""The photo <-> aligned-crop geometry every stage shares: one 3x3 affine matrix.

Pure functions on the matrices stored in align.json (photo pixel -> aligned pixel and its
inverse, pixel centres at integer coordinates).
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

# Pixel i covers [i - 0.5, i + 0.5): index coordinates (centres at integers, as dlib, OpenCV's warps
# and drag points use) + PIXEL_CENTRE = continuous coordinates (the pixel's edges at integers).
PIXEL_CENTRE = 0.5


def apply_matrix(m, pts) -> np.ndarray:
    """Map [..., 2] points (x, y) with a 3x3 affine matrix."""
    m = np.asarray(m, dtype=np.float64)
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:2, :2].T + m[:2, 2]


def matrix_scale(m) -> float:
    """Output pixels per input pixel of a similarity (its scale)."""
    return math.sqrt(abs(np.linalg.det(np.asarray(m, dtype=np.float64)[:2, :2])))


def resize_matrix(sx: float, sy: float) -> np.ndarray:
    """3x3 index mapping of an image resized by (sx, sy) as cv2.resize does: new = (old + 0.5) * s - 0.5."""
    c = PIXEL_CENTRE
    return np.array([[sx, 0.0, c * sx - c], [0.0, sy, c * sy - c], [0.0, 0.0, 1.0]])


def warp_to_photo(
    aligned: np.ndarray,
    matrix,
    photo_size: Tuple[int, int],
    interpolation: int = cv2.INTER_CUBIC,
    border: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """Warp an aligned image (or mask) back onto the photo's pixel grid (float32)."""
    w, h = photo_size
    m = np.asarray(matrix, dtype=np.float64)
    return cv2.warpAffine(
        aligned.astype(np.float32),
        m[:2],
        (w, h),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=border,
        borderValue=0.0,
    )
