"""Put the edit back into the original photo: two ways, one function for every front end.

`photo` (the default): the generator says *how things moved* and *what is new*, the photo
supplies every pixel it can.  A dense motion field from the reconstruction to the edited image
(OpenCV's DIS optical flow, aligned pixels) is mapped through the align matrix and moves the
photo's own pixels at the photo's resolution; what motion cannot explain (teeth of an opened
mouth, a closed lid) is the edited image's residual over the moved reconstruction, upsampled
and added.  Only the region the edit changed is touched (its size comes from the edit itself);
everywhere else the output is the input photo byte for byte.  See `transfer_edit`.

`generator`: the old whole-face paste, the edited aligned image warped back with the inverse of
the align matrix and blended with a feathered mask that covers the face region of both the
original and the edited face and every dragged point (`blend_mask`, `composite`).  It is kept
for comparison and for edits that change most of the face.

`composite_edit` is the one entry point: `edit`, `composite`, albums and the web editor (live
frames at display resolution, downloads at full resolution) all call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

from align.detect import find_faces
from align.identity import identity_report
from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir, atomic_path, same_file
from common.geometry import apply_matrix, resize_matrix, warp_to_photo
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
    mask: np.ndarray  # H x W float32 in [0, 1], in photo pixels: 0 = the input's own pixel
    box: Optional[Tuple[int, int, int, int]] = None  # photo blend: (x0, y0, x1, y1) of the changed region
    motion: Optional[np.ndarray] = None  # photo blend: the box's shift (photo px) to the source pixel


def composite(photo_rgb: np.ndarray, edited: np.ndarray, matrix: np.ndarray, mask_aligned: np.ndarray) -> Composite:
    """Blend `edited` (aligned) into the photo; pixels where the mask is 0 are copied unchanged."""
    size = photo_rgb.shape[1], photo_rgb.shape[0]
    back = warp_to_photo(edited, matrix, size)
    m = np.clip(warp_to_photo(mask_aligned, matrix, size, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT), 0.0, 1.0)
    m[m < 1.0 / 512] = 0.0
    mixed = photo_rgb.astype(np.float32) * (1 - m[..., None]) + back * m[..., None]
    out = np.where(m[..., None] > 0, np.clip(np.rint(mixed), 0, 255).astype(np.uint8), photo_rgb)
    return Composite(image=out, mask=m)


# photo mode: the edit's motion moves the photo's own pixels ------------------------------------
BLENDS = ("photo", "generator")
DEFAULT_BLEND = "photo"
MOTION_EPS = 0.1  # aligned px: slower than this counts as no motion in the record and changed.png
NOISE_FLOOR = 3.0  # levels of 255: a difference below this is never an edit
NOISE_FACTOR = 2.0  # ... nor one below this many times the median residual (the generator's noise level)
FLOW_SMOOTH = 1 / 128  # Gaussian sigma of the flow's smoothing, as a fraction of the crop side
FLOW_MAX_SIDE = 512  # the flow's finest matching level is at most this many pixels wide
MIN_REGION = 1 / 64  # a changed blob narrower than this fraction of the side (as a square) is noise
EMPTY = 1.0 / 512  # weights below this are exactly 0


@dataclass(frozen=True)
class EditMotion:
    """What the generator says the edit did, all in aligned pixels (S x S)."""

    flow: np.ndarray  # S x S x 2 float32: edited(a) shows reconstruction(a + flow(a)) (backward flow)
    residual: np.ndarray  # S x S x 3 float32: edited minus the moved reconstruction, noise removed
    weight: np.ndarray  # S x S float32 in [0, 1]: the changed region, feathered; 0 = untouched
    noise: float  # the residual level (of 255) below which a change is the generator's noise


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _grid(w: int, h: int, x0: float = 0.0, y0: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32) + x0, np.arange(h, dtype=np.float32) + y0)


def motion_field(reconstruction: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Backward flow S x S x 2 (aligned px): where each edited pixel was in the reconstruction.

    DIS (dense inverse search) with variational refinement, its finest level at most FLOW_MAX_SIDE
    pixels (1024 px crops are matched at half resolution: a quarter of the time, errors still about
    a tenth of a pixel), then smoothed a little: the generator's motions are smooth, and the
    smoothing cuts DIS's error on them.
    """
    size = reconstruction.shape[0]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(max(0, int(math.ceil(math.log2(size / FLOW_MAX_SIDE)))))
    dis.setPatchStride(2)
    flow = dis.calc(_gray(edited), _gray(reconstruction), None)
    sigma = size * FLOW_SMOOTH
    return cv2.GaussianBlur(flow, (0, 0), sigma) if sigma >= 0.5 else flow


def estimate_motion(reconstruction: np.ndarray, edited: np.ndarray) -> EditMotion:
    """Motion, residual and the feathered changed region of an edit (reconstruction -> edited)."""
    if reconstruction.shape != edited.shape or reconstruction.shape[0] != reconstruction.shape[1]:
        raise UsageError(
            f"the reconstruction {reconstruction.shape} and the edited image {edited.shape} are not one "
            "square size; re-run invert and drag"
        )
    size = reconstruction.shape[0]
    flow = motion_field(reconstruction, edited)
    gx, gy = _grid(size, size)
    moved = cv2.remap(
        reconstruction.astype(np.float32),
        gx + flow[..., 0],
        gy + flow[..., 1],
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    residual = edited.astype(np.float32) - moved
    level = _level(residual)
    noise = max(NOISE_FLOOR, NOISE_FACTOR * float(np.median(level)))
    residual *= np.clip((level - noise) / noise, 0.0, 1.0)[..., None]  # soft threshold: no step at the edge
    # changed: where the edited image differs from the reconstruction beyond the noise (by motion or
    # new content); elsewhere the flow is a guess on noise and flat areas, and the photo stays as it is
    core = _drop_specks(_level(edited.astype(np.float32) - reconstruction.astype(np.float32)) > noise, size)
    # ... and around it, as far as half its radius, wherever the flow says it moved (a motion's tail)
    reach = int(math.ceil(max(2.0, 0.5 * math.sqrt(core.sum() / math.pi))))
    core |= (_distance_to(core) <= reach) & (np.linalg.norm(flow, axis=2) > MOTION_EPS)
    return EditMotion(flow=flow, residual=residual, weight=_feather(core, size), noise=round(noise, 3))


def _level(diff: np.ndarray) -> np.ndarray:
    """Per pixel, the largest channel's absolute difference, smoothed over a pixel's neighbourhood."""
    return cv2.GaussianBlur(np.abs(diff).max(axis=2), (0, 0), 1.0)


def _distance_to(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest pixel of `region` (0 inside it): a fast dilation."""
    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _drop_specks(core: np.ndarray, size: int) -> np.ndarray:
    """`core` without its blobs smaller than (size x MIN_REGION)^2 pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= (size * MIN_REGION) ** 2
    return keep[labels]


def _feather(core: np.ndarray, size: int) -> np.ndarray:
    """The changed pixels grown and softened by an amount that scales with their extent, weight 1 on
    every changed pixel, faded to 0 before the crop border (no edit is known beyond it)."""
    area = int(core.sum())
    if area == 0:
        return np.zeros((size, size), np.float32)
    sigma = float(np.clip(0.1 * math.sqrt(area / math.pi), 1.0, size / 32))
    r = int(math.ceil(2 * sigma))
    grown = (_distance_to(core) <= r).astype(np.float32)
    weight = np.maximum(cv2.GaussianBlur(grown, (0, 0), sigma), core.astype(np.float32))
    band = max(2, int(round(3 * sigma)))
    ramp = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / band, 0, 1).astype(np.float32)
    weight *= ramp[None, :] * ramp[:, None]
    weight[weight < EMPTY] = 0.0
    return weight


def _photo_box(weight: np.ndarray, inverse: np.ndarray, photo_size: Tuple[int, int]):
    """(x0, y0, x1, y1): the photo pixels the changed region can touch, or None."""
    ys, xs = np.nonzero(weight)
    if len(xs) == 0:
        return None
    corners = [(x, y) for x in (xs.min() - 1, xs.max() + 1) for y in (ys.min() - 1, ys.max() + 1)]
    p = apply_matrix(inverse, corners)
    w, h = photo_size
    x0, y0 = (max(0, int(math.floor(v)) - 2) for v in p.min(0))
    x1, y1 = min(w, int(math.ceil(p[:, 0].max())) + 3), min(h, int(math.ceil(p[:, 1].max())) + 3)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def transfer(photo_rgb: np.ndarray, matrix: np.ndarray, motion: EditMotion) -> Composite:
    """Move the photo's own pixels by `motion` and add its residual, inside the changed region only.

    For an output photo pixel x at aligned a = M x, the source photo pixel is M^-1 (a + w flow(a))
    with w the feathered weight; the residual (times w) is added on top.  Pixels where w = 0 are
    copied from the photo unchanged.  Only the photo-space box around the region is computed.
    """
    h, w = photo_rgb.shape[:2]
    m = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(m)
    out = photo_rgb.copy()
    mask = np.zeros((h, w), np.float32)
    box = _photo_box(motion.weight, inverse, (w, h))
    if box is None:
        return Composite(image=out, mask=mask)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    to_aligned = (m @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]]))[:2]  # box pixel -> aligned

    def sample(img: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.warpAffine(
            img, to_aligned, (bw, bh), flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
        )

    weight = np.clip(sample(motion.weight, cv2.INTER_LINEAR), 0.0, 1.0)
    weight[weight < EMPTY] = 0.0
    shift = (sample(motion.flow, cv2.INTER_LINEAR) @ inverse[:2, :2].T.astype(np.float32)) * weight[..., None]
    # the photo pixels the box reads from: the box grown by the largest motion
    reach = int(math.ceil(float(np.abs(shift).max()))) + 3
    sx0, sy0, sx1, sy1 = max(0, x0 - reach), max(0, y0 - reach), min(w, x1 + reach), min(h, y1 + reach)
    gx, gy = _grid(bw, bh, x0 - sx0, y0 - sy0)
    moved = cv2.remap(
        photo_rgb[sy0:sy1, sx0:sx1].astype(np.float32),
        gx + shift[..., 0],
        gy + shift[..., 1],
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if motion.residual.any():  # new content (most pure motions have none)
        moved += sample(motion.residual, cv2.INTER_CUBIC) * weight[..., None]
    new = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(weight[..., None] > 0, new, photo_rgb[y0:y1, x0:x1])
    mask[y0:y1, x0:x1] = weight
    return Composite(image=out, mask=mask, box=box, motion=shift)


def transfer_edit(
    photo_rgb: np.ndarray, matrix: np.ndarray, reconstruction: np.ndarray, edited: np.ndarray
) -> np.ndarray:
    """The photo with the edit that turned `reconstruction` into `edited`, made of the photo's own pixels.

    `photo_rgb` H x W x 3 uint8; `matrix` align.json's 3x3 photo -> aligned; `reconstruction`
    (invert/reconstruction.png) and `edited` (drag/edited.png) S x S x 3 uint8.  Returns H x W x 3 uint8.

    1. Motion: dense backward optical flow edited -> reconstruction (DIS, aligned pixels).
    2. New content: the edited image minus the reconstruction moved by that flow; what stays below
       the generator's noise level (NOISE_FACTOR x the median residual, at least NOISE_FLOOR levels
       of 255) is dropped.
    3. The changed region is where the edited image differs from the reconstruction by more than
       that noise level (specks dropped), extended by up to half its radius to where the flow moves
       more than MOTION_EPS aligned px (the tail of a motion), then grown and feathered by a tenth
       of its own radius: its size comes from the edit, not from the face hull.  A motion that
       changes the generator's image by less than its noise far from any edit changes nothing.
    4. In photo pixels, inside that region's box only, the photo is resampled (bicubic) along the
       flow mapped through the matrix, and the upsampled residual is added; outside the region
       every pixel is the input's, byte for byte.

    Assumes the matrix is a similarity or affine map (align's FFHQ crop is a similarity) and that
    both images come from one generator with the same noise, so that their difference is the edit.
    Weaker where optical flow is: large motions (several times a smile), occlusions and
    disocclusions (a lid closing, a mouth opening: there the flow is guesswork and the residual
    carries the new content, with the photo's detail from wherever the flow pointed), and changes of
    lighting or colour, which come back only through the residual.  benchmarks/composite.py
    measures these cases.
    """
    return transfer(photo_rgb, matrix, estimate_motion(reconstruction, edited)).image


def motion_stats(motion: EditMotion, matrix: np.ndarray) -> dict:
    """Largest and mean motion in photo pixels (mean over the pixels that moved), and the residual's share."""
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))[:2, :2]
    moving = (np.linalg.norm(motion.flow, axis=2) > MOTION_EPS) & (motion.weight > 0)
    px = np.linalg.norm(motion.flow @ inverse.T.astype(np.float32), axis=2)
    return {
        "max_px": round(float(px[motion.weight > 0].max()) if moving.any() else 0.0, 3),
        "mean_px": round(float(px[moving].mean()) if moving.any() else 0.0, 3),
        "residual_share": round(float((np.abs(motion.residual).max(axis=2) > 0).mean()), 5),
        "noise_level": motion.noise,
    }


@dataclass(frozen=True)
class EditComposite:
    """One front end's composite: the photo with the edit, and what the generator said the edit did."""

    composite: Composite
    motion: EditMotion
    blend: str
    edited_face_found: Optional[bool] = None  # generator blend only: whether its mask includes the edited face

    @property
    def image(self) -> np.ndarray:
        return self.composite.image


def check_blend(blend: str) -> str:
    if blend not in BLENDS:
        raise UsageError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
    return blend


def composite_edit(
    photo_rgb: np.ndarray,
    matrix: np.ndarray,
    reconstruction: np.ndarray,
    edited: np.ndarray,
    blend: str = DEFAULT_BLEND,
    landmarks: Optional[np.ndarray] = None,
    points: Sequence[Sequence[float]] = (),
) -> EditComposite:
    """The photo with the edit, by `blend`; what every front end calls.

    `landmarks` (the face's 68, aligned pixels) and `points` (handles, targets and final positions,
    aligned pixels) shape the generator blend's mask; the photo blend needs neither.
    """
    motion = estimate_motion(reconstruction, edited)
    if check_blend(blend) == "photo":
        return EditComposite(transfer(photo_rgb, matrix, motion), motion, blend)
    polygons = [face_polygon(landmarks)] if landmarks is not None else []
    edited_faces = _edited_landmarks(edited)
    if edited_faces is not None:
        polygons.append(face_polygon(edited_faces))
    mask = blend_mask(edited.shape[0], polygons, points)
    return EditComposite(composite(photo_rgb, edited, matrix, mask), motion, blend, edited_faces is not None)


def display_matrix(matrix: np.ndarray, photo_size: Tuple[int, int], display_size: Tuple[int, int]) -> np.ndarray:
    """The photo -> aligned matrix for the photo resized (cv2.resize) from `photo_size` to `display_size`."""
    sx, sy = display_size[0] / photo_size[0], display_size[1] / photo_size[1]
    return np.asarray(matrix, dtype=np.float64) @ np.linalg.inv(resize_matrix(sx, sy))


def changed_picture(photo_rgb: np.ndarray, result: EditComposite, matrix: np.ndarray, max_side: int = 1024):
    """composite/changed.png: the photo around the changed region, the region tinted (red: moved,
    blue: new content), arrows from where content was to where the edit put it (lengthened up to
    10x when the motion is a few pixels, the factor written on the picture)."""
    mask = result.composite.mask
    ys, xs = np.nonzero(mask > 0)
    h, w = photo_rgb.shape[:2]
    if len(xs) == 0:
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        pad = int(0.5 * max(xs.max() - xs.min(), ys.max() - ys.min())) + 8
        x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
        x1, y1 = min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)
    scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
    view = photo_rgb[y0:y1, x0:x1].astype(np.float32)
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    size = result.motion.weight.shape[0]
    box_to_aligned = (np.asarray(matrix, dtype=np.float64) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]]))[:2]
    new = cv2.warpAffine(
        (np.abs(result.motion.residual).max(axis=2) > 0).astype(np.float32),
        box_to_aligned,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    m = mask[y0:y1, x0:x1, None]
    tint = np.where(new[..., None] > 0, np.float32([40, 90, 255]), np.float32([255, 40, 40]))
    view = view * (1 - 0.35 * m) + tint * 0.35 * m
    img = cv2.resize(np.clip(view, 0, 255).astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    step = max(4, size // 24)
    arrows = []  # (from, to) in picture pixels
    for ay in range(step // 2, size, step):
        for ax in range(step // 2, size, step):
            f = result.motion.flow[ay, ax]
            if result.motion.weight[ay, ax] > 0 and np.hypot(*f) > MOTION_EPS:
                dst, src = apply_matrix(inverse, [(ax, ay), (ax + f[0], ay + f[1])])
                arrows.append(((src - (x0, y0)) * scale, (dst - (x0, y0)) * scale))
    if arrows:
        longest = max(float(np.linalg.norm(b - a)) for a, b in arrows)
        gain = int(np.clip(0.06 * max(img.shape[:2]) / max(longest, 1e-6), 1, 10))  # a few pixels are hard to see
        for a, b in arrows:
            tail = b - gain * (b - a)
            cv2.arrowedLine(
                img,
                tuple(np.rint(tail).astype(int)),
                tuple(np.rint(b).astype(int)),
                (255, 255, 0),
                1,
                cv2.LINE_AA,
                tipLength=0.3,
            )
        label = "motion arrows" + (f" x{gain}" if gain > 1 else "") + f" (up to {longest / scale:.1f} px)"
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 0), 1)):  # outlined, readable on any photo
            cv2.putText(img, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
    return img


def output_identity(photo_rgb: np.ndarray, output_rgb: np.ndarray, landmarks: np.ndarray) -> dict:
    """dlib identity distance of the output's face (detected again) against the input's, on the same crop
    around the face (landmarks in photo pixels), scaled so the face is about 250 px wide."""
    lm = np.asarray(landmarks, dtype=np.float64)
    lo, hi = lm.min(0), lm.max(0)
    side = float(max(hi - lo))
    h, w = photo_rgb.shape[:2]
    x0, y0 = (max(0, int(v - 0.6 * side)) for v in lo)
    x1, y1 = min(w, int(hi[0] + 0.6 * side) + 1), min(h, int(hi[1] + 0.6 * side) + 1)
    scale = min(1.0, 250.0 / max(side, 1.0))
    crop = lambda img: cv2.resize(img[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    report = identity_report(crop(photo_rgb), crop(output_rgb))
    return dict(report, compared="input photo vs output photo, the face detected again (dlib face recognition)")


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
    """composite.json: where the output went, how it was blended, what changed, and whether it is still you.

    Keys: output, format, blend, mask_pixels (weight > 0), changed_pixels (differ from the input),
    motion {max_px, mean_px, residual_share, noise_level} (photo pixels), identity (input vs output
    photo), edited_face_found (generator blend).  A several-face edit (pipeline/group.py) has, instead
    of motion and identity, faces [one entry per edited face], skipped [face, box, reason], order, warnings.
    """

    STAGE = "composite"
    FILE = "composite.json"

    @property
    def mask_pixels(self) -> int:
        return int(self.data["mask_pixels"])

    @property
    def blend(self) -> str:
        return self.data.get("blend", "generator")

    @property
    def changed_pixels(self) -> int:
        return int(self.data["changed_pixels"])

    @property
    def motion(self) -> dict:
        return dict(self.data.get("motion", {}))

    @property
    def identity_distance(self) -> Optional[float]:
        return self.data.get("identity", {}).get("distance")

    @property
    def faces(self) -> List[dict]:
        """A several-face edit's entries, one per edited face (pipeline/group.py); [] for one face."""
        return list(self.data.get("faces", []))

    @property
    def warnings(self) -> List[str]:
        return list(self.data.get("warnings", []))

    def describe(self) -> str:
        """One line for the edit summary."""
        m = self.motion
        if self.faces:
            order = ", ".join(str(f["face"]) for f in self.faces)
            return (
                f"{self.blend} blend: {len(self.faces)} faces edited (in order {order}); "
                f"{self.changed_pixels} photo pixels changed"
            )
        return (
            f"{self.blend} blend: {self.changed_pixels} photo pixels changed; motion up to {m.get('max_px', 0):.1f} px "
            f"(mean {m.get('mean_px', 0):.1f} px)"
        )


def run_composite(
    run_dir: Path,
    out: Path,
    jpeg_quality: Optional[int] = None,
    photo: Optional[Photo] = None,
    blend: str = DEFAULT_BLEND,
) -> CompositeRecord:
    """RUN_DIR/{invert/reconstruction,drag/edited}.png -> OUT (the whole photo) + RUN_DIR/composite/
    (composite.json, blend_mask.png, changed.png, compare.png).

    `photo` is the aligned photo already decoded (by `edit`); else it is read from align.json's path.
    """
    check_blend(blend)
    run = RunFolder(Path(run_dir))
    align = AlignRecord.load(run.path)
    drag = DragRecord.load_fresh(run.path)
    edited = run.read_image("drag", "edited.png")
    reconstruction = run.read_image("invert", "reconstruction.png")
    if same_file(out, align.photo_path):
        raise UsageError(f"-o {out} is the input photo: refusing to overwrite it; give another -o")
    photo = photo or load_photo(align.photo_path)
    if photo.sha256 != align.photo_sha256:
        raise UsageError(f"{photo.path} changed since it was aligned; re-run the edit with --from align")
    output_format(out, photo)  # refuse a bad extension before any work
    result = composite_edit(
        photo.rgb, align.matrix, reconstruction, edited, blend, align.aligned_landmarks, drag.aligned_points
    )
    comp = result.composite
    record = CompositeRecord(
        {
            "output": str(Path(out).resolve()),
            "format": output_format(out, photo),
            "blend": blend,
            "mask_pixels": int((comp.mask > 0).sum()),
            "changed_pixels": int((comp.image != photo.rgb).any(axis=2).sum()),
            "motion": motion_stats(result.motion, align.matrix),
            "identity": output_identity(photo.rgb, comp.image, align.landmarks),
            **({"edited_face_found": result.edited_face_found} if blend == "generator" else {}),
        }
    )
    with atomic_dir(run.stage("composite")) as tmp:
        Image.fromarray((comp.mask * 255).round().astype(np.uint8)).save(tmp / "blend_mask.png")
        Image.fromarray(changed_picture(photo.rgb, result, align.matrix)).save(tmp / "changed.png")
        Image.fromarray(side_by_side(photo.rgb, comp.image)).save(tmp / "compare.png")
        record.save(tmp)
    save_like(Path(out), comp.image, photo, jpeg_quality)
    return record


def _edited_landmarks(edited: np.ndarray) -> Optional[np.ndarray]:
    """68 landmarks of the edited face (aligned pixels), or None when dlib finds no face."""
    faces = find_faces(edited)
    if not faces:
        return None
    centre = np.array(edited.shape[1::-1]) / 2
    best = min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(0) - centre))
    return best.landmarks
