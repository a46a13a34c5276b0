"""Drag points and masks from the command line, mapped into the aligned image.

Points are always (x, y).  In photo coordinates (the default: what a user sees) they are
mapped into the aligned image with the stored align matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from common.errors import UsageError
from common.geometry import apply_matrix, matrix_scale
from drag.config import MIN_DRAG_PX
from drag.presets import add_preset_drags

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_PAIR = re.compile(rf"^{_NUM},{_NUM}:{_NUM},{_NUM}$")
_CIRCLE = re.compile(rf"^{_NUM},{_NUM},{_NUM}$")


@dataclass(frozen=True)
class DragPair:
    handle: Tuple[float, float]
    target: Tuple[float, float]


def parse_drag(text: str) -> DragPair:
    """'X1,Y1:X2,Y2' -> DragPair((X1, Y1), (X2, Y2))."""
    m = _PAIR.match(text)
    if not m:
        raise UsageError(f"--drag {text!r} is not X1,Y1:X2,Y2 (handle x,y then target x,y)")
    x1, y1, x2, y2 = (float(v) for v in m.groups())
    return DragPair((x1, y1), (x2, y2))


def parse_circle(text: str) -> Tuple[float, float, float]:
    m = _CIRCLE.match(text)
    if not m:
        raise UsageError(f"--mask-circle {text!r} is not X,Y,R")
    x, y, r = (float(v) for v in m.groups())
    if r <= 0:
        raise UsageError("--mask-circle radius must be positive")
    return x, y, r


def fmt_point(p) -> str:
    """(x, y) rounded for messages: (569.04, 12) rather than (569.0400000000001, 12.0)."""
    return "(" + ", ".join(f"{round(float(v), 2):g}" for v in p) + ")"


def to_aligned(pairs: Sequence[DragPair], coords: str, matrix: np.ndarray, size: int) -> np.ndarray:
    """[N, 2, 2] array of (handle, target) in aligned pixels.

    Refuses points off the face crop, drags shorter than half an aligned pixel, and one
    handle given two targets.
    """
    if not pairs:
        raise UsageError("give at least one --drag X1,Y1:X2,Y2")
    pts = np.array([[p.handle, p.target] for p in pairs], dtype=np.float64)
    if coords == "photo":
        pts = apply_matrix(matrix, pts)
    elif coords != "aligned":
        raise UsageError("--coords must be photo or aligned")
    for i, (pair, (h, t)) in enumerate(zip(pairs, pts)):
        for name, orig, p in (("handle", pair.handle, h), ("target", pair.target, t)):
            if not (0 <= p[0] <= size - 1 and 0 <= p[1] <= size - 1):
                raise UsageError(
                    f"drag {i + 1}: the {name} {fmt_point(orig)} is outside the aligned face crop "
                    f"(it maps to ({p[0]:.1f}, {p[1]:.1f}) in a {size}x{size} crop); "
                    "see align/preview.png for the crop"
                )
        if np.linalg.norm(t - h) < MIN_DRAG_PX:
            raise UsageError(
                f"drag {i + 1}: the handle {fmt_point(pair.handle)} and the target "
                f"{fmt_point(pair.target)} are under half an aligned pixel apart "
                f"({np.linalg.norm(t - h):.2f} px in the {size}x{size} crop): drag farther"
            )
    for i in range(len(pts)):
        for j in range(i):
            if np.linalg.norm(pts[i, 0] - pts[j, 0]) < MIN_DRAG_PX:
                raise UsageError(
                    f"drags {j + 1} and {i + 1} both move the handle {fmt_point(pairs[i].handle)}: "
                    "give each handle one target"
                )
    return pts


def circle_mask(x: float, y: float, r: float, coords: str, matrix: np.ndarray, size: int) -> np.ndarray:
    """Movable region (1 inside) as a size x size float mask in aligned pixels."""
    if coords == "photo":
        x, y = apply_matrix(matrix, [x, y])
        r = r * matrix_scale(matrix)
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx - x) ** 2 + (yy - y) ** 2 <= r * r).astype(np.float32)


def load_mask(path: Path, coords: str, matrix: np.ndarray, size: int, photo_size: Tuple[int, int]) -> np.ndarray:
    """A mask image (white = movable) of the photo's or the aligned image's size -> aligned mask."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise UsageError(f"mask file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"{path} is not a readable mask image ({exc})") from None
    h, w = arr.shape
    if coords == "photo" and (w, h) == tuple(photo_size):
        arr = cv2.warpAffine(arr, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    elif (w, h) != (size, size):
        want = f"{photo_size[0]}x{photo_size[1]} (the photo)" if coords == "photo" else f"{size}x{size}"
        raise UsageError(f"mask {path} is {w}x{h}; it must be {want}")
    mask = (arr >= 0.5).astype(np.float32)
    if mask.max() == 0:
        raise UsageError(f"mask {path} marks nothing as movable (white = movable)")
    return mask


def map_to_aligned(
    pairs: Sequence[DragPair],
    coords: str,
    matrix: np.ndarray,
    size: int,
    photo_size: Tuple[int, int],
    mask_circle: Optional[Tuple[float, float, float]] = None,
    mask_path: Optional[Path] = None,
    presets: Optional[Mapping[str, float]] = None,
    landmarks: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The one mapper of a drag request: points and mask in photo, relative (0..1 of the photo) or
    aligned coordinates -> ([N, 2, 2] aligned points, aligned mask or None).  Used by the CLI,
    `edit` and the web editor alike.

    `presets` (name -> amount) add the drags derived from `landmarks` (the face's 68 landmarks in
    aligned pixels) after the explicit ones; their default mask applies unless a mask is given.
    """
    if presets and landmarks is None:
        raise UsageError("presets need the face's landmarks, and this run has none: re-run `photodrag align`")
    if coords == "relative":
        w, h = photo_size
        pairs = [DragPair((p.handle[0] * w, p.handle[1] * h), (p.target[0] * w, p.target[1] * h)) for p in pairs]
        if mask_circle is not None:
            x, y, r = mask_circle
            mask_circle = (x * w, y * h, r * max(w, h))
        coords = "photo"
    pts = to_aligned(pairs, coords, matrix, size) if pairs or not presets else np.zeros((0, 2, 2))
    mask = None
    if mask_circle is not None:
        mask = circle_mask(*mask_circle, coords, matrix, size)
    elif mask_path is not None:
        mask = load_mask(Path(mask_path), coords, matrix, size, photo_size)
    if presets:
        return add_preset_drags(pts, mask, landmarks, presets, size)
    return pts, mask
