"""Every face of a group photo: detected once (RUN/detect/), then which of them a several-face edit edits.

A several-face edit (`--face all`, `--face 0,2`) runs the align stage once per face in
RUN/faces/N/; the faces it aligns come from this stage's record, so the photo is searched once and a
rerun of a fresh record searches nothing.  Indices are the detector's order, as in `align --list-faces`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from align.align import MIN_FACE_PX, choose_face
from align.detect import Face, find_faces
from align.ffhq import ffhq_quad
from align.stage import draw_faces, encode_png
from common.errors import UsageError
from common.fileio import atomic_dir, file_digests
from common.images import Photo
from common.record import StageRecord
from common.run import claim_run_folder

FORMAT_VERSION = 1
MAX_UPSCALE = 4.0  # with "all": a face whose crop is upscaled more than this to the generator is skipped
OWNED_FILES = ("faces.png",)


@dataclass(frozen=True)
class DetectRecord(StageRecord):
    """RUN/detect/faces.json: every face of the photo (box, score, 68 landmarks), in detector order."""

    STAGE = "detect"
    FILE = "faces.json"

    @property
    def faces(self) -> List[Face]:
        return [Face(tuple(f["box"]), float(f["score"]), np.asarray(f["landmarks"])) for f in self.data["faces"]]

    def is_fresh(self, photo_sha256: str) -> bool:
        return self.data.get("format_version") == FORMAT_VERSION and self.data.get("photo_sha256") == photo_sha256


def detect_faces(photo: Photo) -> DetectRecord:
    """Every face of the photo, as RUN/detect/faces.json records them; nothing is written (a face choice
    the photo cannot meet is refused before the run folder changes)."""
    faces = find_faces(photo.rgb)
    if not faces:
        choose_face(faces, "largest")  # raises the no-face error
    return DetectRecord(
        {
            "format_version": FORMAT_VERSION,
            "photo_sha256": photo.sha256,
            "faces": [{"box": list(f.box), "score": f.score, "landmarks": f.landmarks.tolist()} for f in faces],
        }
    )


def save_detect(detected: DetectRecord, photo: Photo, run_dir: Union[str, Path]) -> DetectRecord:
    """Write RUN/detect/ (faces.json, faces.png with numbered boxes) for faces `detect_faces` found."""
    record = dict(detected.data)
    with atomic_dir(claim_run_folder(run_dir) / DetectRecord.STAGE) as tmp:
        (tmp / "faces.png").write_bytes(encode_png(draw_faces(photo.rgb, detected.faces)))
        record["files"] = file_digests(tmp, OWNED_FILES)
        DetectRecord(record).save(tmp)
    return DetectRecord(record)


def run_detect(photo: Photo, run_dir: Union[str, Path]) -> DetectRecord:
    """Find every face of the photo and write RUN/detect/ (`detect_faces`, then `save_detect`)."""
    return save_detect(detect_faces(photo), photo, run_dir)


@dataclass(frozen=True)
class FaceChoice:
    """The faces to edit (ascending index: the order their edits are applied) and why the others are not."""

    chosen: Tuple[int, ...]
    skipped: Dict[int, str] = field(default_factory=dict)


def too_small(face: Face, size: int, min_face: int) -> Optional[str]:
    """Why `face` is too small to edit with a `size` px generator, or None."""
    l, t, r, b = face.box
    if min(r - l, b - t) < min_face:
        return f"too small: its box is {r - l:.0f}x{b - t:.0f} px, under {min_face} px (--min-face)"
    quad = ffhq_quad(face.landmarks)
    crop = float(np.linalg.norm(quad[3] - quad[0]))
    if size / crop > MAX_UPSCALE:
        return f"too small for the {size} px generator: its crop is {crop:.0f} px, upscaled {size / crop:.1f}x"
    return None


def choose_faces(faces: List[Face], request, size: int, min_face: Optional[int] = None) -> FaceChoice:
    """`request` "all" (faces too small for the generator skipped) or a tuple of indices (each must
    exist; never skipped: asked for by name, it gets align's small-face warning instead)."""
    if not faces:
        choose_face(faces, "largest")  # the no-face error
    if request != "all":
        return FaceChoice(tuple(sorted(choose_face(faces, i) for i in request)))
    floor = MIN_FACE_PX if min_face is None else min_face
    reasons = {i: too_small(f, size, floor) for i, f in enumerate(faces)}
    chosen = tuple(i for i, why in reasons.items() if why is None)
    if not chosen:
        raise UsageError(
            f"every face is too small to edit ({len(faces)} found, the largest {max(f.size for f in faces):.0f} px): "
            "name faces by index (--face 0,1) to edit them anyway, or lower --min-face"
        )
    return FaceChoice(chosen, {i: why for i, why in reasons.items() if why is not None})


def face_box(face: Face) -> List[float]:
    """The face's box (left, top, right, bottom), rounded for records and summaries."""
    return [round(v, 2) for v in face.box]
