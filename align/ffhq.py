"""FFHQ-style alignment as pure functions: landmarks -> quad -> one exact matrix -> warp.

The FFHQ dataset script builds an oriented square ("quad") from the eyes and mouth,
then shrinks, crops, pads with a blurred reflection and resamples the quad to the
output square.  Here the resampling is a single similarity transform (photo pixel ->
aligned pixel, pixel centres at integer coordinates), stored as a 3x3 matrix so the
edit can be warped back exactly.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from common.geometry import PIXEL_CENTRE, matrix_scale, resize_matrix

# dlib's 68-point layout
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad [top-left, bottom-left, bottom-right, top-right] (4 x 2, photo pixels)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"need 68 (x, y) landmarks, got shape {lm.shape}")
    eye_left, eye_right = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_to_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 similarity mapping photo pixels to aligned pixels (quad corners -> square corners).

    Continuous coordinates put pixel centres at +0.5; the matrix works on pixel indices
    (centres at integers), as dlib landmarks and OpenCV's warps do.
    """
    src = np.asarray(quad, dtype=np.float64)[[0, 1, 3]] + PIXEL_CENTRE  # TL, BL, TR corners (continuous)
    dst = np.array([[0, 0], [0, size], [size, 0]], dtype=np.float64)
    a = np.hstack([src, np.ones((3, 1))])  # solve [x y 1] @ A.T = dst exactly, in float64
    affine = np.linalg.solve(a, dst).T
    m = np.eye(3)
    m[:2] = affine
    c = PIXEL_CENTRE
    shift = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])  # continuous -> index, on the aligned side
    unshift = np.array([[1, 0, c], [0, 1, c], [0, 0, 1]])  # index -> continuous, on the photo side
    return shift @ m @ unshift


def _wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; for wide kernels, computed at reduced resolution (same look, a fraction of the cost)."""
    k = int(max(1, sigma // 4))
    if k == 1:
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / k, sigmaY=sigma / k, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _padded_crop(rgb: np.ndarray, quad: np.ndarray, qsize: float) -> Tuple[np.ndarray, np.ndarray]:
    """Crop around the quad; where the quad leaves the photo, pad with a blurred reflection.

    Returns (crop as float32, 3x3 matrix photo -> crop).  As in the FFHQ script: a border
    of 10% of the quad size around the quad's bounding box; if that leaves the photo,
    every side is reflect-padded by at least 30% of the quad size and the padding is
    blended towards a Gaussian blur (sigma 2% of the quad) and the median colour, more
    so further from the real pixels.
    """
    h, w = rgb.shape[:2]
    border = max(int(round(qsize * 0.1)), 3)
    lo = np.floor(quad.min(0)).astype(int) - border
    hi = np.ceil(quad.max(0)).astype(int) + border
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), w), min(int(hi[1]), h)
    if x0 >= x1 or y0 >= y1:
        raise ValueError("the face quad lies outside the photo")
    crop = rgb[y0:y1, x0:x1].astype(np.float32)
    pad = np.array([x0 - lo[0], y0 - lo[1], hi[0] - x1, hi[1] - y1])  # left, top, right, bottom
    if pad.max() > max(border - 4, 0):
        left, top, right, bottom = (int(p) for p in np.maximum(pad, int(round(qsize * 0.3))))
        crop = np.pad(crop, ((top, bottom), (left, right), (0, 0)), mode="reflect")
        ch, cw = crop.shape[:2]
        yy = np.arange(ch, dtype=np.float32)[:, None]
        xx = np.arange(cw, dtype=np.float32)[None, :]
        mask = np.maximum(
            1.0 - np.minimum(xx / left, (cw - 1 - xx) / right), 1.0 - np.minimum(yy / top, (ch - 1 - yy) / bottom)
        )[..., None]
        crop += (_wide_blur(crop, qsize * 0.02) - crop) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        median = np.median(crop[::4, ::4].reshape(-1, 3), axis=0)  # a 1/16 sample is plenty for a median
        crop += (median - crop) * np.clip(mask, 0.0, 1.0)
        x0, y0 = x0 - left, y0 - top
    return crop, np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)


def warp_to_aligned(rgb: np.ndarray, matrix: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Resample the photo into the size x size aligned image with `matrix` (photo -> aligned)."""
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    crop, to_crop = _padded_crop(rgb, np.asarray(quad, dtype=np.float64), qsize)
    m = matrix @ np.linalg.inv(to_crop)  # crop -> aligned
    scale = matrix_scale(m)
    if scale < 0.5:  # shrink first with area averaging (FFHQ's 'shrink' step) to avoid aliasing
        k = 1.0 / (2.0 * scale)
        new_w, new_h = max(1, int(round(crop.shape[1] / k))), max(1, int(round(crop.shape[0] / k)))
        sx, sy = crop.shape[1] / new_w, crop.shape[0] / new_h
        crop = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
        down = resize_matrix(1 / sx, 1 / sy)  # index mapping of the INTER_AREA resize: new = (old + 0.5) / s - 0.5
        m = m @ np.linalg.inv(down)
    out = cv2.warpAffine(crop, m[:2], (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
