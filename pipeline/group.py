"""The composite of a several-face edit: every face's edit put into the photo in one pass.

Each face was aligned, inverted and dragged in its own RUN/faces/N/ (the same stages as a one-face
edit); here the photo, decoded once, gets each face's edit in ascending face order, each face's
composite reading the photo as the earlier faces left it, and is written once, in its own format.
Outside every face's changed region the output is the input byte for byte.  Where two faces'
changed regions overlap, the later face's edit is applied over the earlier one's, and a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir
from common.images import Photo
from common.run import RunFolder
from drag.record import DragRecord
from inversion.record import InversionRecord
from pipeline.composite import (
    CompositeRecord,
    changed_picture,
    check_blend,
    composite_edit,
    motion_stats,
    output_format,
    output_identity,
    save_like,
    side_by_side,
)


@dataclass(frozen=True)
class FacePart:
    """One edited face of the group: its index, its run folder (RUN/faces/N) and how its stages went."""

    index: int
    run_path: Path
    stages: Dict[str, str]  # stage -> "ran" | "reused"


@dataclass(frozen=True)
class _Applied:
    part: FacePart
    align: AlignRecord
    result: object  # EditComposite
    overlaps: List[int]


def _apply(image: np.ndarray, owner: np.ndarray, part: FacePart, photo: Photo, blend: str) -> _Applied:
    """One face's edit over `image` (the photo as the earlier faces left it); `owner` (face index per
    photo pixel, -1 untouched) is updated and says which earlier faces' regions this one overlaps."""
    run = RunFolder(part.run_path)
    align = AlignRecord.load(run.path)
    if align.photo_sha256 != photo.sha256:
        raise UsageError(f"{run.path} was aligned on another photo; re-run the edit with --from align")
    drag = DragRecord.load_fresh(run.path)
    edited = run.read_image("drag", "edited.png")
    reconstruction = run.read_image("invert", "reconstruction.png")
    result = composite_edit(
        image, align.matrix, reconstruction, edited, blend, align.aligned_landmarks, drag.aligned_points
    )
    region = result.composite.mask > 0
    overlaps = sorted(int(i) for i in np.unique(owner[region]) if i >= 0)
    owner[region] = part.index
    return _Applied(part, align, result, overlaps)


def overlap_warning(later: int, earlier: Sequence[int]) -> str:
    """The warning of face `later`'s changed region reaching the regions of the `earlier` faces."""
    names = f"face {earlier[0]}" if len(earlier) == 1 else "faces " + ", ".join(str(i) for i in earlier)
    return (
        f"face {later}'s edited region overlaps that of {names}: the edits are applied in face order, "
        f"so there face {later}'s edit is laid over the earlier"
    )


def _face_entry(applied: _Applied, photo: Photo, output_rgb: np.ndarray) -> dict:
    """composite.json's entry for one face: box, stages, changed region, presets and identity figures."""
    part, align, comp = applied.part, applied.align, applied.result.composite
    drag, inversion = DragRecord.load(part.run_path), InversionRecord.load(part.run_path)
    return {
        "face": part.index,
        "box": [round(v, 2) for v in align.data["box"]],
        "run_dir": str(part.run_path),
        "stages": dict(part.stages),
        "changed_box": list(comp.box) if comp.box is not None else None,
        "mask_pixels": int((comp.mask > 0).sum()),
        "motion": motion_stats(applied.result.motion, align.matrix),
        "presets": drag.presets,
        "identity": {
            "photo vs reconstruction": inversion.identity_distance,
            "photo vs edited": drag.identity_distance,
            "photo vs output photo": output_identity(photo.rgb, output_rgb, align.landmarks).get("distance"),
        },
        "overlaps": applied.overlaps,
    }


def run_group_composite(
    run_dir: Path,
    out: Path,
    parts: Sequence[FacePart],
    photo: Photo,
    blend: str,
    jpeg_quality: Optional[int] = None,
    skipped: Sequence[dict] = (),
) -> CompositeRecord:
    """Every face's edit (RUN/faces/N/) into `photo` -> OUT, and RUN/composite/ (composite.json with an
    entry per face and per skipped face, blend_mask.png: every face's region, changed-N.png, compare.png)."""
    check_blend(blend)
    fmt = output_format(out, photo)  # refuse a bad extension before any work
    image, owner = photo.rgb, np.full(photo.rgb.shape[:2], -1, np.int32)
    mask = np.zeros(photo.rgb.shape[:2], np.float32)
    applied = []
    for part in sorted(parts, key=lambda p: p.index):
        done = _apply(image, owner, part, photo, blend)
        image, mask = done.result.image, np.maximum(mask, done.result.composite.mask)
        applied.append(done)
    faces = [_face_entry(a, photo, image) for a in applied]
    record = CompositeRecord(
        {
            "output": str(Path(out).resolve()),
            "format": fmt,
            "blend": blend,
            "mask_pixels": int((mask > 0).sum()),
            "changed_pixels": int((image != photo.rgb).any(axis=2).sum()),
            "order": [a.part.index for a in applied],
            "faces": faces,
            "skipped": list(skipped),
            "warnings": [overlap_warning(a.part.index, a.overlaps) for a in applied if a.overlaps],
        }
    )
    with atomic_dir(RunFolder(Path(run_dir)).stage("composite")) as tmp:
        Image.fromarray((mask * 255).round().astype(np.uint8)).save(tmp / "blend_mask.png")
        for a in applied:
            picture = changed_picture(photo.rgb, a.result, a.align.matrix)
            Image.fromarray(picture).save(tmp / f"changed-{a.part.index}.png")
        Image.fromarray(side_by_side(photo.rgb, image)).save(tmp / "compare.png")
        record.save(tmp)
    save_like(Path(out), image, photo, jpeg_quality)
    return record
