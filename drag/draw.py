"""Pictures of drags: arrows on a face, the before | after preview, a preset preview, animations.

Points are (x, y) in the image's pixel indices (centres at integers), as everywhere in drag/.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Mapping

import cv2
import numpy as np
from PIL import Image

from common.errors import UsageError
from common.fileio import atomic_path
from common.geometry import PIXEL_CENTRE
from drag.presets import preset_drags, preset_mask


def draw_points(img: np.ndarray, handles, targets, starts=None) -> np.ndarray:
    """RGB image with arrows handle -> target (red handle, blue target, grey start)."""
    zoom = max(1, 512 // img.shape[1])
    canvas = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else img.copy()
    canvas = np.ascontiguousarray(canvas)
    r = max(3, canvas.shape[1] // 128)
    c = PIXEL_CENTRE

    def pt(p):
        return int(round((p[0] + c) * zoom - c)), int(round((p[1] + c) * zoom - c))

    for i, (h, t) in enumerate(zip(handles, targets)):
        if starts is not None:
            cv2.circle(canvas, pt(starts[i]), r, (160, 160, 160), -1, cv2.LINE_AA)
        cv2.arrowedLine(canvas, pt(h), pt(t), (255, 255, 255), max(1, r // 2), cv2.LINE_AA, tipLength=0.2)
        cv2.circle(canvas, pt(h), r, (230, 40, 40), -1, cv2.LINE_AA)
        cv2.circle(canvas, pt(t), r, (40, 90, 230), -1, cv2.LINE_AA)
    return canvas


def before_after(before: np.ndarray, edited: np.ndarray, handles, targets, final) -> np.ndarray:
    """drag/preview.png: the face before with its arrows | the edited face, arrows from where the
    handles ended, the starts in grey."""
    return np.hstack([draw_points(before, handles, targets), draw_points(edited, final, targets, starts=handles)])


def preview_image(aligned: np.ndarray, landmarks, amounts: Mapping[str, float]) -> np.ndarray:
    """The aligned RGB image with the presets' default mask tinted green and arrows handle -> target."""
    size = aligned.shape[0]
    handles, targets = preset_drags(landmarks, amounts, size)
    mask = preset_mask(landmarks, list(amounts), size)[..., None]
    tinted = aligned.astype(np.float32) * (1 - 0.35 * mask) + np.array([40, 200, 80], np.float32) * 0.35 * mask
    return draw_points(np.clip(tinted, 0, 255).astype(np.uint8), handles, targets)


def write_animation(path: Path, frames: List[np.ndarray], fps: int = 12) -> None:
    """GIF (Pillow) or MP4 (OpenCV) of RGB frames, written atomically."""
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            imgs = [Image.fromarray(f) for f in frames]
            imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        elif suffix == ".mp4":
            h, w = frames[0].shape[:2]
            tmp_mp4 = tmp.with_suffix(".mp4")
            writer = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                raise UsageError("this OpenCV build cannot write MP4; use --animate steps.gif")
            for f in frames:
                writer.write(np.ascontiguousarray(f[..., ::-1]))
            writer.release()
            tmp_mp4.replace(tmp)
        else:
            raise UsageError(f"--animate {path.name}: use a .gif or .mp4 file name")
