"""The composite of a several-face edit: every face's edit put into the photo in one pass.

Each face was aligned, inverted and dragged in its own RUN/faces/N/ (the same stages as a one-face
edit); here the photo, decoded once, gets each face's edit in ascending face order, each face's
composite reading the photo as the earlier faces left it, and is written once, in its own format.
Outside every face's changed region the output is the input byte for byte.  Where two faces'
changed regions overlap, the later face's edit is applied over the earlier one's, and a warning says so.
`composite_faces` is that pass on images in memory: the web editor's frames and download call it too.
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
    EditComposite,
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
class FaceImages:
    """One face's edit as the composite needs it: the photo -> aligned matrix, the reconstruction the
    edit started from and the edited image (aligned pixels), the face's aligned landmarks and the
    dragged points (handles, targets, final positions; aligned pixels) for the generator blend."""

    index: int
    matrix: np.ndarray
    reconstruction: np.ndarray
    edited: np.ndarray
    landmarks: Optional[np.ndarray] = None
    points: Sequence[Sequence[float]] = ()


@dataclass(frozen=True)
class Layer:
    """What one face's edit did to the photo: its composite and the earlier faces its region overlaps."""

    index: int
    result: EditComposite
    overlaps: List[int]


@dataclass(frozen=True)
class GroupImage:
    image: np.ndarray  # the photo with every face's edit
    mask: np.ndarray  # every face's region, float in [0, 1]
    layers: List[Layer]  # in the order they were applied (ascending face index)


def composite_faces(photo_rgb: np.ndarray, faces: Sequence[FaceImages], blend: str) -> GroupImage:
    """The photo with every face's edit, one composite_edit per face in ascending face order, each over
    the photo as the earlier faces left it; where regions overlap the later face's edit lies on top.
    `edit --face all`, the web editor's frames and its download all call this."""
    image, owner = photo_rgb, np.full(photo_rgb.shape[:2], -1, np.int32)
    mask = np.zeros(photo_rgb.shape[:2], np.float32)
    layers = []
    for face in sorted(faces, key=lambda f: f.index):
        result = composite_edit(
            image, face.matrix, face.reconstruction, face.edited, blend, face.landmarks, [list(p) for p in face.points]
        )
        region = result.composite.mask > 0
        overlaps = sorted(int(i) for i in np.unique(owner[region]) if i >= 0)
        owner[region] = face.index
        image, mask = result.image, np.maximum(mask, result.composite.mask)
        layers.append(Layer(face.index, result, overlaps))
    return GroupImage(image, mask, layers)


def _face_images(part: FacePart, align: AlignRecord, photo: Photo) -> FaceImages:
    """A face's run folder (RUN/faces/N, its `align` record read) as the composite's input, checked to
    belong to `photo`."""
    run = RunFolder(part.run_path)
    if align.photo_sha256 != photo.sha256:
        raise UsageError(f"{run.path} was aligned on another photo; re-run the edit with --from align")
    drag = DragRecord.load_fresh(run.path)
    return FaceImages(
        part.index,
        align.matrix,
        run.read_image("invert", "reconstruction.png"),
        run.read_image("drag", "edited.png"),
        align.aligned_landmarks,
        drag.aligned_points,
    )


def overlap_warning(later: int, earlier: Sequence[int]) -> str:
    """The warning of face `later`'s changed region reaching the regions of the `earlier` faces."""
    names = f"face {earlier[0]}" if len(earlier) == 1 else "faces " + ", ".join(str(i) for i in earlier)
    return (
        f"face {later}'s edited region overlaps that of {names}: the edits are applied in face order, "
        f"so there face {later}'s edit is laid over the earlier"
    )


def _face_entry(part: FacePart, align: AlignRecord, layer: Layer, photo: Photo, output_rgb: np.ndarray) -> dict:
    """composite.json's entry for one face: box, stages, changed region, presets and identity figures."""
    comp = layer.result.composite
    drag, inversion = DragRecord.load(part.run_path), InversionRecord.load(part.run_path)
    return {
        "face": part.index,
        "box": [round(v, 2) for v in align.data["box"]],
        "run_dir": str(part.run_path),
        "stages": dict(part.stages),
        "changed_box": list(comp.box) if comp.box is not None else None,
        "mask_pixels": int((comp.mask > 0).sum()),
        "motion": motion_stats(layer.result.motion, align.matrix),
        "presets": drag.presets,
        "identity": {
            "photo vs reconstruction": inversion.identity_distance,
            "photo vs edited": drag.identity_distance,
            "photo vs output photo": output_identity(photo.rgb, output_rgb, align.landmarks).get("distance"),
        },
        "overlaps": layer.overlaps,
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
    by_index = {p.index: p for p in parts}
    aligns = {p.index: AlignRecord.load(p.run_path) for p in parts}  # each face's align.json, read once
    group = composite_faces(photo.rgb, [_face_images(p, aligns[p.index], photo) for p in parts], blend)
    image, mask = group.image, group.mask
    record = CompositeRecord(
        {
            "output": str(Path(out).resolve()),
            "format": fmt,
            "blend": blend,
            "mask_pixels": int((mask > 0).sum()),
            "changed_pixels": int((image != photo.rgb).any(axis=2).sum()),
            "order": [layer.index for layer in group.layers],
            "faces": [_face_entry(by_index[la.index], aligns[la.index], la, photo, image) for la in group.layers],
            "skipped": list(skipped),
            "warnings": [overlap_warning(la.index, la.overlaps) for la in group.layers if la.overlaps],
        }
    )
    with atomic_dir(RunFolder(Path(run_dir)).stage("composite")) as tmp:
        Image.fromarray((mask * 255).round().astype(np.uint8)).save(tmp / "blend_mask.png")
        for layer in group.layers:
            matrix = aligns[layer.index].matrix
            Image.fromarray(changed_picture(photo.rgb, layer.result, matrix)).save(tmp / f"changed-{layer.index}.png")
        Image.fromarray(side_by_side(photo.rgb, image)).save(tmp / "compare.png")
        record.save(tmp)
    save_like(Path(out), image, photo, jpeg_quality)
    return record
