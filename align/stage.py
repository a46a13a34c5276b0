"""The align stage on disk: photo -> RUN_DIR/align/{aligned.png, align.json, preview.png}."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np

from align.align import AlignConfig, AlignResult, align_face, choose_face
from align.detect import Face, find_faces
from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir, file_digests, write_bytes
from common.images import Photo, load_photo
from common.run import claim_run_folder

FORMAT_VERSION = 1
PREVIEW_MAX_SIDE = 1024


def _preview_canvas(rgb: np.ndarray):
    scale = min(2.0, PREVIEW_MAX_SIDE / max(rgb.shape[:2]))  # small photos are enlarged to be seen
    img = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1]), scale  # OpenCV draws in BGR


def _box(img, face: Face, scale: float, color, label: str = "") -> None:
    l, t, r, b = (int(round(v * scale)) for v in face.box)
    cv2.rectangle(img, (l, t), (r, b), color, 2)
    if label:
        cv2.putText(img, label, (l + 3, max(t - 6, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2, cv2.LINE_AA)


def draw_faces(rgb: np.ndarray, faces: List[Face]) -> np.ndarray:
    """The photo with every detected face boxed and numbered (BGR)."""
    img, scale = _preview_canvas(rgb)
    for i, f in enumerate(faces):
        _box(img, f, scale, (0, 200, 255), f"{i} ({f.score:.2f})")
    return img


def draw_alignment(rgb: np.ndarray, res: AlignResult) -> np.ndarray:
    """The photo with the chosen face's landmarks, box and FFHQ quad (BGR)."""
    img, scale = _preview_canvas(rgb)
    for i, f in enumerate(res.faces):
        if i != res.face_index:
            _box(img, f, scale, (160, 160, 160), str(i))
    _box(img, res.face, scale, (0, 200, 255), str(res.face_index))
    quad = np.rint(res.quad * scale).astype(np.int32)
    cv2.polylines(img, [quad], True, (0, 255, 0), 2, cv2.LINE_AA)
    cv2.circle(img, tuple(int(v) for v in quad[0]), 5, (0, 255, 0), -1)  # top-left corner of the crop
    for x, y in res.face.landmarks * scale:
        cv2.circle(img, (int(round(x)), int(round(y))), 2, (60, 60, 255), -1, cv2.LINE_AA)
    return img


def encode_png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise UsageError("cannot encode a PNG image")
    return buf.tobytes()


def write_png(path: Path, bgr: np.ndarray) -> None:
    """Encode a BGR image as PNG and write it atomically."""
    write_bytes(path, encode_png(bgr))


def align_record(photo: Photo, res: AlignResult, aligned_png: bytes, face_request) -> dict:
    """The contents of align.json."""
    return {
        "format_version": FORMAT_VERSION,
        "face_request": face_request,
        "aligned_sha256": hashlib.sha256(aligned_png).hexdigest(),
        "photo": {
            "path": str(photo.path.resolve()),
            "sha256": photo.sha256,
            "format": photo.format,
            "width": photo.size[0],
            "height": photo.size[1],
            "exif_transposed": photo.exif_transposed,
            "has_alpha": photo.alpha is not None,
        },
        "size": res.size,
        "face_index": res.face_index,
        "faces": [{"box": [round(v, 2) for v in f.box], "score": round(f.score, 4)} for f in res.faces],
        "box": [round(v, 2) for v in res.face.box],
        "landmarks": res.face.landmarks.tolist(),
        "quad": res.quad.tolist(),
        "matrix": res.matrix.tolist(),
        "inverse": res.inverse.tolist(),
        "warnings": list(res.warnings),
    }


def run_align(
    photo: Union[Photo, str, Path],
    run_dir: Union[str, Path],
    size: int = AlignConfig.size,
    face: Union[str, int] = AlignConfig.face,
    faces: Optional[Sequence[Face]] = None,
) -> AlignResult:
    """Align the photo (a path, or one already decoded) and write the stage's files all at once (or none);
    `faces` are the photo's faces already detected (a group edit detects once for every face)."""
    photo = photo if isinstance(photo, Photo) else load_photo(photo)
    res = align_face(photo.rgb, size=size, face=face, faces=faces)
    with atomic_dir(claim_run_folder(run_dir) / "align") as tmp:
        aligned_png = encode_png(res.aligned[..., ::-1])
        (tmp / "aligned.png").write_bytes(aligned_png)
        write_png(tmp / "preview.png", draw_alignment(photo.rgb, res))
        record = align_record(photo, res, aligned_png, face if face == "largest" else int(face))
        record["files"] = file_digests(tmp, OWNED_FILES)
        AlignRecord(record).save(tmp)
    return res


OWNED_FILES = ("aligned.png", "preview.png")  # besides align.json, which records their hashes


def list_faces(photo_path: Union[str, Path], run_dir: Union[str, Path, None] = None) -> List[Face]:
    """Every face in the photo; with `run_dir`, also write RUN_DIR/faces.png with numbered boxes."""
    photo = load_photo(photo_path)
    faces = find_faces(photo.rgb)
    if not faces:
        choose_face(faces, "largest")  # raises the no-face error
    if run_dir is not None:
        write_png(claim_run_folder(run_dir) / "faces.png", draw_faces(photo.rgb, faces))
    return faces
