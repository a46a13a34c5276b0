"""Python API of the align stage: photo array in, aligned face + exact transform out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from align.detect import Face, find_faces
from align.ffhq import ffhq_quad, quad_to_matrix, warp_to_aligned
from common.errors import UsageError
from common.geometry import apply_matrix, matrix_scale
from weights.registry import DEFAULT_SIZE

SMALL_FACE_RATIO = 0.5  # warn when the face crop is upscaled more than 2x
MIN_FACE_PX = 64  # warn when dlib's face box is narrower than this (in photo pixels), whatever the model


@dataclass(frozen=True)
class AlignResult:
    """An aligned face and everything needed to map between it and the photo."""

    aligned: np.ndarray  # size x size x 3 uint8
    size: int
    face_index: int
    faces: Tuple[Face, ...]  # every face found, in index order
    quad: np.ndarray  # 4 x 2, photo pixels
    matrix: np.ndarray  # 3 x 3, photo pixel -> aligned pixel
    inverse: np.ndarray  # 3 x 3, aligned pixel -> photo pixel
    warnings: Tuple[str, ...] = field(default=())

    @property
    def face(self) -> Face:
        return self.faces[self.face_index]

    def to_aligned(self, pts) -> np.ndarray:
        return apply_matrix(self.matrix, pts)

    def to_photo(self, pts) -> np.ndarray:
        return apply_matrix(self.inverse, pts)


MIN_SIZE, MAX_SIZE = 64, 1024  # the generator resolutions an aligned crop may have


@dataclass(frozen=True)
class AlignConfig:
    """What the align stage is asked for; each default written once."""

    size: int = DEFAULT_SIZE  # the default model's resolution, so `align` then `invert` use the default model
    face: Union[str, int] = "largest"  # or a face index


def valid_size(size) -> bool:
    return isinstance(size, int) and MIN_SIZE <= size <= MAX_SIZE and size & (size - 1) == 0


def check_size(size: int) -> int:
    if not valid_size(size):
        raise UsageError(f"--size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {size}")
    return size


def choose_face(faces: List[Face], face: Union[str, int]) -> int:
    """Index of the face to use: `largest` (size x detector score) or an explicit index."""
    if not faces:
        raise UsageError(
            "no face found in the photo (dlib's frontal detector needs a roughly frontal, "
            "unobstructed face of at least about 40 pixels)"
        )
    if face == "largest":
        # scores can be negative for weak detections: rank by size x (score shifted positive)
        return int(np.argmax([f.size * max(f.score + 1.0, 1e-3) for f in faces]))
    try:
        idx = int(face)
    except (TypeError, ValueError):
        raise UsageError(f"--face must be 'largest' or a face index, got {face!r}") from None
    if not 0 <= idx < len(faces):
        raise UsageError(
            f"--face {idx} is out of range: {len(faces)} face(s) found "
            f"(indices 0..{len(faces) - 1}; see `align --list-faces`)"
        )
    return idx


def align_face(
    rgb: np.ndarray,
    size: int = AlignConfig.size,
    face: Union[str, int] = AlignConfig.face,
    faces: Optional[Sequence[Face]] = None,
) -> AlignResult:
    """Detect faces (unless `faces` already holds them, in detector order), pick one, and warp it
    FFHQ-style to a size x size image."""
    size = check_size(size)
    faces = find_faces(rgb) if faces is None else list(faces)
    idx = choose_face(faces, face)
    quad = ffhq_quad(faces[idx].landmarks)
    matrix = quad_to_matrix(quad, size)
    aligned = warp_to_aligned(rgb, matrix, quad, size)
    notes = small_face_warnings(faces[idx], matrix, size)
    return AlignResult(
        aligned=aligned,
        size=size,
        face_index=idx,
        faces=tuple(faces),
        quad=quad,
        matrix=matrix,
        inverse=np.linalg.inv(matrix),
        warnings=tuple(notes),
    )


def small_face_warnings(face: Face, matrix: np.ndarray, size: int) -> List[str]:
    """Warnings for a face too small to edit well: box under MIN_FACE_PX, or a crop upscaled over 2x."""
    notes = []
    l, t, r, b = face.box
    if min(r - l, b - t) < MIN_FACE_PX:
        notes.append(
            f"small face: the face is only {r - l:.0f}x{b - t:.0f} px in the photo (under {MIN_FACE_PX} px): "
            "landmarks, likeness and the edit will be poor; use a larger photo of the face"
        )
    scale = matrix_scale(matrix)
    if scale > 1.0 / SMALL_FACE_RATIO:
        crop = size / scale
        notes.append(
            f"small face: the face crop is only {crop:.0f} px wide in the photo and is upscaled {scale:.1f}x "
            f"to {size} px: the result will be blurry"
        )
    return notes
