"""Put the edited face back into the original photo.

The edited aligned image is warped back with the inverse of the align matrix and blended
with a feathered mask that covers the face region of both the original and the edited
face (the edit may move the jaw, the mouth or the hair) and every dragged point.  Where
the mask is zero the output pixels are the input photo's pixels, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

from align.detect import find_faces
from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir, atomic_path, same_file
from common.geometry import warp_to_photo
from common.images import Photo, load_photo
from common.record import StageRecord
from common.run import RunFolder
from drag.record import DragRecord

# where each format's encoder is told to keep quality
EXTENSIONS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
BROWS = slice(17, 27)


def face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """The 68 landmarks plus a forehead (brows raised by 0.8 x the eye-to-mouth distance)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    mouth = (lm[48] + lm[54]) / 2
    up = eye - mouth
    forehead = lm[BROWS] + up * 0.8
    return np.vstack([lm, forehead])


def blend_mask(
    size: int, polygons: Iterable[np.ndarray], points: Sequence[Sequence[float]], feather: Optional[float] = None
) -> np.ndarray:
    """Feathered mask in aligned pixels (size x size, float32 in [0, 1]).

    Union of the convex hulls of `polygons` and discs around `points`, dilated by a margin,
    softened by a Gaussian, and faded to zero before the crop border (outside the crop
    there are no edited pixels).
    """
    feather = feather or size * 0.03
    m = np.zeros((size, size), np.uint8)
    for poly in polygons:
        hull = cv2.convexHull(np.rint(np.asarray(poly)).astype(np.int32))
        cv2.fillConvexPoly(m, hull, 255)
    r = int(round(size * 0.08))
    for x, y in points:
        cv2.circle(m, (int(round(x)), int(round(y))), r, 255, -1)
    margin = int(round(size * 0.04))
    if margin > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    soft = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), sigmaX=feather, sigmaY=feather)
    # fade to exactly zero over the outer band of the crop
    band = max(2, int(round(3 * feather)))
    ramp = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / band, 0, 1).astype(np.float32)
    soft *= ramp[None, :] * ramp[:, None]
    soft[soft < 1.0 / 512] = 0.0
    return soft


@dataclass(frozen=True)
class Composite:
    image: np.ndarray  # H x W x 3 uint8, the edited photo
    mask: np.ndarray  # H x W float32 in [0, 1], in photo pixels


def composite(photo_rgb: np.ndarray, edited: np.ndarray, matrix: np.ndarray, mask_aligned: np.ndarray) -> Composite:
    """Blend `edited` (aligned) into the photo; pixels where the mask is 0 are copied unchanged."""
    size = photo_rgb.shape[1], photo_rgb.shape[0]
    back = warp_to_photo(edited, matrix, size)
    m = np.clip(warp_to_photo(mask_aligned, matrix, size, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT), 0.0, 1.0)
    m[m < 1.0 / 512] = 0.0
    mixed = photo_rgb.astype(np.float32) * (1 - m[..., None]) + back * m[..., None]
    out = np.where(m[..., None] > 0, np.clip(np.rint(mixed), 0, 255).astype(np.uint8), photo_rgb)
    return Composite(image=out, mask=m)


def output_format(out: Path, photo: Photo) -> str:
    """The format of `out`: from its extension when it names one, else the photo's."""
    fmt = EXTENSIONS.get(out.suffix.lower())
    if fmt is None:
        if out.suffix:
            raise UsageError(f"unknown output extension {out.suffix!r}; use one of {', '.join(sorted(EXTENSIONS))}")
        fmt = photo.format if photo.format in EXTENSIONS.values() else "PNG"
    return fmt


def save_like(out: Path, image: np.ndarray, photo: Photo, jpeg_quality: Optional[int] = None) -> None:
    """Write `image` atomically in the output format, keeping what the input had: JPEG quantisation
    (unless a quality is given), alpha, ICC profile and EXIF (orientation reset: pixels are upright)."""
    fmt = output_format(out, photo)
    with Image.open(photo.path) as src:
        icc = src.info.get("icc_profile")
        exif = src.getexif()
        qtables = getattr(src, "quantization", None) if src.format == "JPEG" else None
        sampling = JpegImagePlugin.get_sampling(src) if src.format == "JPEG" else None
    if 0x0112 in exif:
        exif[0x0112] = 1
    img = Image.fromarray(image)
    if photo.alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        img.putalpha(Image.fromarray(photo.alpha))
    kw = {}
    if icc:
        kw["icc_profile"] = icc
    if len(exif) and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kw["exif"] = exif.tobytes()
    if fmt == "JPEG":
        if jpeg_quality is not None:
            kw["quality"] = int(jpeg_quality)
        elif qtables:
            kw["qtables"] = qtables
            if sampling is not None and sampling >= 0:
                kw["subsampling"] = sampling
        else:
            kw["quality"] = 95
    elif fmt == "WEBP":
        kw["quality"] = jpeg_quality or 95
    with atomic_path(out) as tmp:
        img.save(tmp, format=fmt, **kw)


def side_by_side(before: np.ndarray, after: np.ndarray, max_width: int = 1600) -> np.ndarray:
    """Before | after, scaled down to at most `max_width` pixels wide."""
    pair = np.hstack([before, after])
    scale = min(1.0, max_width / pair.shape[1])
    if scale < 1.0:
        pair = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return pair


@dataclass(frozen=True)
class CompositeRecord(StageRecord):
    """composite.json: where the output went, its format, and how much of the photo the mask covers."""

    STAGE = "composite"
    FILE = "composite.json"

    @property
    def mask_pixels(self) -> int:
        return int(self.data["mask_pixels"])


def run_composite(run_dir: Path, out: Path, jpeg_quality: Optional[int] = None, photo: Optional[Photo] = None) -> dict:
    """RUN_DIR/drag/edited.png -> OUT (the whole photo) + RUN_DIR/composite/{blend_mask,compare}.png.

    `photo` is the aligned photo already decoded (by `edit`); else it is read from align.json's path.
    """
    run = RunFolder(Path(run_dir))
    align = AlignRecord.load(run.path)
    drag = DragRecord.load(run.path)
    if drag.invert_sha256 != run.file_sha256("invert", "invert.json"):
        raise UsageError(f"{run.stage('drag')} was made from another inversion; re-run drag")
    edited = run.read_image("drag", "edited.png")
    if same_file(out, align.photo_path):
        raise UsageError(f"-o {out} is the input photo: refusing to overwrite it; give another -o")
    photo = photo or load_photo(align.photo_path)
    if photo.sha256 != align.photo_sha256:
        raise UsageError(f"{photo.path} changed since it was aligned; re-run the edit with --from align")
    output_format(out, photo)  # refuse a bad extension before any work
    polygons = [face_polygon(align.aligned_landmarks)]
    edited_faces = _edited_landmarks(edited)
    if edited_faces is not None:
        polygons.append(face_polygon(edited_faces))
    mask = blend_mask(align.size, polygons, drag.aligned_points)
    comp = composite(photo.rgb, edited, align.matrix, mask)
    record = CompositeRecord(
        {
            "output": str(Path(out).resolve()),
            "format": output_format(out, photo),
            "edited_face_found": edited_faces is not None,
            "mask_pixels": int((comp.mask > 0).sum()),
        }
    )
    with atomic_dir(run.stage("composite")) as tmp:
        Image.fromarray((comp.mask * 255).round().astype(np.uint8)).save(tmp / "blend_mask.png")
        Image.fromarray(side_by_side(photo.rgb, comp.image)).save(tmp / "compare.png")
        record.save(tmp)
    save_like(Path(out), comp.image, photo, jpeg_quality)
    return {"output": str(out), "mask_pixels": record.mask_pixels}


def _edited_landmarks(edited: np.ndarray) -> Optional[np.ndarray]:
    """68 landmarks of the edited face (aligned pixels), or None when dlib finds no face."""
    faces = find_faces(edited)
    if not faces:
        return None
    centre = np.array(edited.shape[1::-1]) / 2
    best = min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(0) - centre))
    return best.landmarks
