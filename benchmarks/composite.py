"""Composite quality with a known answer: `--blend photo` against `--blend generator`.

Prints one JSON object.  For each photo and generator size (256, 512, 1024) the photo is aligned
as the align stage does; then, without any generator:

- "reconstruction" = the aligned crop with its detail removed (downsampled 2x, upsampled, blurred),
  as a generator's reconstruction lacks the photo's detail;
- "edited" = the reconstruction moved by a known smooth motion: both mouth corners outward and up
  (a smile of 0.04 IOD per axis, the `smile=0.5` preset's size; x2; x4 = a large motion), and one
  case with a patch of new content (teeth between the lips) on top of the smile, and one where both
  images carry independent noise (2 levels of 255: a generator's images of one face never agree
  exactly);
- the right answer = the photo moved by that motion (mapped through the align matrix), with the
  patch, upsampled, on top.

Per case and mode: PSNR against the right answer over the face (landmark hull + forehead),
Laplacian-variance sharpness of the output over the right answer's (face, and the moved region
alone), the share of face pixels far from the motion (true motion under 0.001 aligned px) that are
the photo's own bytes, and for the patch how much of it shows (1 = all of it, 0 = none).  Then the
time of each mode on a 12 MP photo (a photo upscaled so that its face spans about a third of a
3000 x 4000 frame, built in memory).  `--picture` writes a before/after crop of the face at full
resolution (generator blend | photo blend | right answer) for one photo and case.

    python benchmarks/composite.py [--photos DIR | --photo P ...] [--sizes 256 512 1024]
                                   [--picture OUT.jpg --picture-photo P --picture-size 512]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align.align import align_face  # noqa: E402
from common.geometry import apply_matrix, warp_to_photo  # noqa: E402
from common.images import load_photo  # noqa: E402
from pipeline.composite import composite_edit, face_polygon  # noqa: E402

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
DEFAULT_PHOTOS = ("Tom_Cruise_avp_2014_4.jpg", "2008_001009.jpg")
CASES = {"smile": 1.0, "smile_x2": 2.0, "smile_x4": 4.0, "new_content": 1.0, "smile_noisy": 1.0}
NOISE = 2.0  # smile_noisy: independent Gaussian noise (levels of 255) on the reconstruction and the edited image
SMILE = 0.04  # IOD per axis for each mouth corner (drag/presets.py smile=0.5)
FAR = 1e-3  # aligned px: a face pixel whose true motion is below this is far from the motion


def grid(w: int, h: int):
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def remove_detail(aligned: np.ndarray) -> np.ndarray:
    """What a generator's reconstruction lacks: the finest detail (half resolution, then a blur)."""
    s = aligned.shape[0]
    half = cv2.resize(aligned, (s // 2, s // 2), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.resize(half, (s, s), interpolation=cv2.INTER_CUBIC), (0, 0), 0.7)


def smile_field(lm: np.ndarray, size: int, amount: float):
    """Backward field g (edited(a) = reconstruction(a + g(a))): Gaussian bumps at the mouth corners.

    Returns (g, handles, targets) in aligned pixels."""
    iod = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    sigma = 0.25 * iod
    x, y = grid(size, size)
    g = np.zeros((size, size, 2), np.float32)
    handles, targets = [], []
    for corner, direction in ((lm[48], (-1.0, -1.0)), (lm[54], (1.0, -1.0))):
        v = np.array(direction) * SMILE * iod * amount
        bump = np.exp(-((x - corner[0]) ** 2 + (y - corner[1]) ** 2) / (2 * sigma**2))
        g[..., 0] -= v[0] * bump
        g[..., 1] -= v[1] * bump
        handles.append(corner)
        targets.append(corner + v)
    return g, np.array(handles), np.array(targets)


def teeth(lm: np.ndarray, size: int):
    """New content: a row of teeth between the lips (colour layer, soft alpha), aligned pixels."""
    iod = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    c = lm[60:68].mean(0)
    x, y = grid(size, size)
    inside = ((x - c[0]) / (0.24 * iod)) ** 2 + ((y - c[1]) / (0.07 * iod)) ** 2 <= 1.0
    alpha = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(0.8, size / 400))
    gaps = (np.abs(((x - c[0]) / (0.07 * iod) + 0.5) % 1.0 - 0.5) < 0.06).astype(np.float32)
    layer = np.stack([238 - 150 * gaps, 236 - 150 * gaps, 224 - 140 * gaps], axis=2)
    return layer.astype(np.float32), alpha


def remap(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    x, y = grid(g.shape[1], g.shape[0])
    return cv2.remap(img, x + g[..., 0], y + g[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def known_edit(aligned: np.ndarray, lm: np.ndarray, case: str) -> dict:
    size = aligned.shape[0]
    recon = remove_detail(aligned)
    g, handles, targets = smile_field(lm, size, CASES[case])
    edited = remap(recon, g).astype(np.float32)
    layer = alpha = None
    if case == "new_content":
        layer, alpha = teeth(lm, size)
        edited = edited * (1 - alpha[..., None]) + layer * alpha[..., None]
    if case == "smile_noisy":
        rng = np.random.default_rng(0)
        recon = np.clip(np.rint(recon + rng.normal(0, NOISE, recon.shape)), 0, 255).astype(np.uint8)
        edited = edited + rng.normal(0, NOISE, edited.shape)
    edited = np.clip(np.rint(edited), 0, 255).astype(np.uint8)
    return dict(recon=recon, edited=edited, g=g, layer=layer, alpha=alpha, points=np.vstack([handles, targets]))


def right_answer(photo: np.ndarray, matrix: np.ndarray, edit: dict):
    """The photo moved by the known motion (+ the patch): (answer, true motion photo px, patch alpha)."""
    h, w = photo.shape[:2]
    inverse = np.linalg.inv(matrix)
    g_photo = warp_to_photo(edit["g"], matrix, (w, h), cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)
    shift = g_photo @ inverse[:2, :2].T.astype(np.float32)
    x, y = grid(w, h)
    moved = cv2.remap(
        photo.astype(np.float32), x + shift[..., 0], y + shift[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = np.zeros((h, w), np.float32)
    if edit["alpha"] is not None:
        alpha = np.clip(warp_to_photo(edit["alpha"], matrix, (w, h), cv2.INTER_LINEAR, cv2.BORDER_CONSTANT), 0, 1)
        layer = warp_to_photo(edit["layer"], matrix, (w, h), cv2.INTER_CUBIC)
        moved = moved * (1 - alpha[..., None]) + layer * alpha[..., None]
    answer = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    motion = np.linalg.norm(shift, axis=2)
    return answer, motion, alpha, np.linalg.norm(g_photo, axis=2)


def face_mask(shape, landmarks_photo: np.ndarray) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.rint(face_polygon(landmarks_photo)).astype(np.int32)), 1)
    return m.astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2))
    return round(10 * math.log10(255.0**2 / mse), 2) if mse > 0 else float("inf")


def laplacian_var(img: np.ndarray, where: np.ndarray) -> float:
    lap = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F)
    return float(lap[where].var())


def measure(photo, res, case: str) -> dict:
    m = res.matrix
    lm = apply_matrix(m, res.face.landmarks)
    edit = known_edit(res.aligned, lm, case)
    answer, motion, alpha, g_aligned = right_answer(photo, m, edit)
    face = face_mask(photo.shape, res.face.landmarks)
    moved = face & (g_aligned > 0.1)
    far = face & (g_aligned < FAR) & (alpha == 0)
    out = {
        "true_motion_max_px": round(float(motion.max()), 2),
        "photo_px_per_aligned_px": round(1 / math.sqrt(abs(np.linalg.det(m[:2, :2]))), 2),
    }
    for blend in ("generator", "photo"):
        t0 = time.perf_counter()
        r = composite_edit(photo, m, edit["recon"], edit["edited"], blend, lm, edit["points"])
        seconds = time.perf_counter() - t0
        img = r.image
        row = {
            "psnr_face_db": psnr(img, answer, face),
            "psnr_moved_db": psnr(img, answer, moved),
            "sharpness_face": round(laplacian_var(img, face) / laplacian_var(answer, face), 3),
            "sharpness_moved": round(laplacian_var(img, moved) / laplacian_var(answer, moved), 3),
            "far_kept_exactly": round(float((img[far] == photo[far]).all(axis=1).mean()), 4),
            "seconds": round(seconds, 3),
        }
        if edit["alpha"] is not None:
            core = alpha > 0.9
            moved_photo = right_answer(photo, m, dict(edit, alpha=None))[0]
            absent = np.abs(moved_photo[core].astype(np.float64) - answer[core]).mean()
            miss = float(np.abs(img[core].astype(np.float64) - answer[core]).mean())
            row["patch_shown"] = round(1 - miss / absent, 3)
        out[blend] = row
    return out


def twelve_mp(photo: np.ndarray, matrix: np.ndarray, face_px: float):
    """A 3000 x 4000 frame with the photo scaled so its face spans a third of the width; its matrix."""
    W, H = 3000, 4000
    k = (W / 3) / face_px
    big = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    ox, oy = (W - big.shape[1]) // 2, (H - big.shape[0]) // 2
    pad = [max(0, -oy), max(0, -ox)]
    frame = cv2.copyMakeBorder(
        big,
        max(0, oy),
        max(0, H - big.shape[0] - oy),
        max(0, ox),
        max(0, W - big.shape[1] - ox),
        cv2.BORDER_REFLECT_101,
    )[pad[0] : pad[0] + H, pad[1] : pad[1] + W]
    sx, sy = big.shape[1] / photo.shape[1], big.shape[0] / photo.shape[0]
    to_frame = np.array([[sx, 0, 0.5 * sx - 0.5 + ox], [0, sy, 0.5 * sy - 0.5 + oy], [0, 0, 1.0]])
    return np.ascontiguousarray(frame), matrix @ np.linalg.inv(to_frame)


def time_12mp(photo, res, repeats: int = 3) -> dict:
    frame, m = twelve_mp(photo, res.matrix, float(res.face.box[2] - res.face.box[0]))
    lm = apply_matrix(res.matrix, res.face.landmarks)
    edit = known_edit(res.aligned, lm, "smile")
    out = {
        "frame": f"{frame.shape[1]}x{frame.shape[0]}",
        "photo_px_per_aligned_px": round(1 / math.sqrt(abs(np.linalg.det(m[:2, :2]))), 2),
    }
    for blend in ("generator", "photo"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            composite_edit(frame, m, edit["recon"], edit["edited"], blend, lm, edit["points"])
            times.append(time.perf_counter() - t0)
        out[f"{blend}_seconds_median"] = round(statistics.median(times), 3)
    return out


def picture(photo, res, case: str, out: Path) -> dict:
    """Generator blend | photo blend | right answer: the face cropped from each, at the photo's resolution."""
    from PIL import Image, ImageDraw

    m = res.matrix
    lm = apply_matrix(m, res.face.landmarks)
    edit = known_edit(res.aligned, lm, case)
    answer = right_answer(photo, m, edit)[0]
    panels = [
        composite_edit(photo, m, edit["recon"], edit["edited"], b, lm, edit["points"]).image
        for b in ("generator", "photo")
    ]
    face = face_polygon(res.face.landmarks)
    pad = 0.08 * float(np.ptp(face[:, 0]))
    x0, y0 = (max(0, int(v - pad)) for v in face.min(0))
    x1, y1 = min(photo.shape[1], int(face[:, 0].max() + pad)), min(photo.shape[0], int(face[:, 1].max() + pad))
    crops = [p[y0:y1, x0:x1] for p in (*panels, answer)]
    strip = Image.fromarray(np.hstack([np.pad(p, ((24, 0), (2, 2), (0, 0)), constant_values=255) for p in crops]))
    draw = ImageDraw.Draw(strip)
    w = crops[0].shape[1] + 4
    for i, label in enumerate(("--blend generator", "--blend photo", "right answer")):
        draw.text((i * w + 6, 6), label, fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out, quality=90) if out.suffix.lower() in (".jpg", ".jpeg") else strip.save(out)
    return {"picture": str(out), "crop": [x0, y0, x1, y1], "case": case, "size": res.size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    ap.add_argument("--photo", type=Path, action="append", help="photos to use (default: two of --photos)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats on the 12 MP frame")
    ap.add_argument("--picture", type=Path, help="write a before/after strip here")
    ap.add_argument("--picture-photo", type=Path, help="the photo of the strip (default: the first photo)")
    ap.add_argument("--picture-size", type=int, default=512)
    ap.add_argument("--picture-case", default="new_content", choices=list(CASES))
    args = ap.parse_args()
    import torch
    from timing import machine

    names = args.photo or [args.photos / n for n in DEFAULT_PHOTOS]
    photos = [p for p in names if Path(p).is_file()]
    if not photos:
        print(json.dumps({"benchmark": "composite", "error": f"no photos: {[str(p) for p in names]}"}))
        return
    report = {
        "benchmark": "composite",
        "machine": machine(torch.device("cpu")),
        "opencv_threads": cv2.getNumThreads(),
        "definitions": {
            "reconstruction": "aligned crop, downsampled 2x, upsampled (cubic), Gaussian blur 0.7 px",
            "edited": f"reconstruction moved by Gaussian bumps (sigma 0.25 IOD) at the mouth corners, {SMILE} IOD "
            "per axis per unit; new_content adds teeth between the lips",
            "far": f"face pixels whose true motion is under {FAR} aligned px (and off the patch)",
        },
        "photos": {},
    }
    for path in photos:
        photo = load_photo(path).rgb
        rows = {}
        for size in args.sizes:
            res = align_face(photo, size=size)
            rows[str(size)] = {case: measure(photo, res, case) for case in CASES}
        report["photos"][Path(path).name] = rows
    first = load_photo(photos[0]).rgb
    report["twelve_mp"] = {str(s): time_12mp(first, align_face(first, size=s), args.repeats) for s in args.sizes}
    if args.picture:
        src = load_photo(args.picture_photo or photos[0]).rgb
        report["picture"] = picture(src, align_face(src, size=args.picture_size), args.picture_case, args.picture)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
