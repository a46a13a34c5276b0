"""The drag stage on disk: RUN_DIR/invert/ -> RUN_DIR/drag/.

Files: edited.png, w_edited.safetensors, drag.json (points in aligned and photo pixels,
final handles and distances, steps, stop reason, seconds), preview.png (before | after with
arrows), and optionally an animation of the steps (.gif or .mp4).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from align.identity import describe, identity_report
from align.record import AlignRecord
from common.errors import UsageError
from common.fileio import atomic_dir, atomic_path, file_digests
from common.geometry import apply_matrix, matrix_scale
from common.run import RunFolder
from drag.engine import DragConfig, DragEngine, DragState
from drag.presets import measure_presets
from drag.record import DragRecord
from inversion.stage import load_inversion

FORMAT_VERSION = 1


def draw_points(img: np.ndarray, handles, targets, starts=None) -> np.ndarray:
    """RGB image with arrows handle -> target (red handle, blue target, grey start)."""
    zoom = max(1, 512 // img.shape[1])
    canvas = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else img.copy()
    canvas = np.ascontiguousarray(canvas)
    r = max(3, canvas.shape[1] // 128)

    def pt(p):
        return int(round((p[0] + 0.5) * zoom - 0.5)), int(round((p[1] + 0.5) * zoom - 0.5))

    for i, (h, t) in enumerate(zip(handles, targets)):
        if starts is not None:
            cv2.circle(canvas, pt(starts[i]), r, (160, 160, 160), -1, cv2.LINE_AA)
        cv2.arrowedLine(canvas, pt(h), pt(t), (255, 255, 255), max(1, r // 2), cv2.LINE_AA, tipLength=0.2)
        cv2.circle(canvas, pt(h), r, (230, 40, 40), -1, cv2.LINE_AA)
        cv2.circle(canvas, pt(t), r, (40, 90, 230), -1, cv2.LINE_AA)
    return canvas


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


def run_drag(
    run_dir: Path,
    pairs_aligned: np.ndarray,
    mask: Optional[np.ndarray],
    config: DragConfig,
    device="cpu",
    animate: Optional[Path] = None,
    frame_every: int = 5,
    progress: bool = True,
    callback: Optional[Callable[[DragState], None]] = None,
    extra_record: Optional[dict] = None,
    w_start: Optional[torch.Tensor] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    presets: Optional[Mapping[str, float]] = None,
) -> DragState:
    """Drag the inverted face; write RUN_DIR/drag/ all at once.  `pairs_aligned`: [N, 2, 2].

    `w_start` continues from an earlier edit instead of the pivot; `should_stop()` ends the
    drag early (stop reason "stopped"), as an interactive front end needs.  With `presets`
    (name -> amount), drag.json also holds each preset's requested and achieved motion.
    """
    run = RunFolder(Path(run_dir))
    align = AlignRecord.load(run.path)
    w_pivot, G, _ = load_inversion(run.path, device)
    handles, targets = pairs_aligned[:, 0], pairs_aligned[:, 1]
    w0 = w_pivot if w_start is None else w_start.to(w_pivot.device)
    engine = DragEngine(G, w0, handles, targets, mask=mask, config=config)
    before = engine.render(engine.start())
    frames = [draw_points(before, handles, targets)] if animate else []
    bar = tqdm(total=config.steps, desc="drag", unit="step", leave=False, disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    state = engine.start()
    with bar:
        while not state.done:
            if should_stop is not None and should_stop():
                state = dataclasses.replace(state, done=True, reason="stopped")
                break
            state = engine.step(state)
            bar.update(1)
            bar.set_postfix(distance=f"{sum(state.distances):.1f}px", refresh=False)
            if animate and state.step % frame_every == 0 and not state.done:
                frames.append(draw_points(engine.render(state), state.handles.tolist(), targets))
            if callback is not None:
                callback(state)
    seconds = time.perf_counter() - t0
    edited = engine.render(state)
    inverse = align.inverse
    to_photo = lambda p: apply_matrix(inverse, p)
    scale = matrix_scale(inverse)
    final = state.handles.cpu().numpy().astype(np.float64)
    points = []
    for i in range(len(handles)):
        d = float(np.linalg.norm(final[i] - targets[i]))
        points.append(
            {
                "aligned": {
                    "handle": handles[i].tolist(),
                    "target": targets[i].tolist(),
                    "final": final[i].tolist(),
                    "distance": round(d, 3),
                },
                "photo": {
                    "handle": to_photo(handles[i]).round(2).tolist(),
                    "target": to_photo(targets[i]).round(2).tolist(),
                    "final": to_photo(final[i]).round(2).tolist(),
                    "distance": round(d * scale, 3),
                },
            }
        )
    record = {
        "format_version": FORMAT_VERSION,
        "invert_sha256": run.file_sha256("invert", "invert.json"),
        "points": points,
        "mask": mask is not None,
        "steps": state.step,
        "stop_reason": state.reason,
        "seconds": round(seconds, 2),
        "start": "pivot" if w_start is None else "previous edit",
        "ms_per_step": round(1000 * seconds / max(state.step, 1), 1),
        "config": dataclasses.asdict(config),
        "radii_px": {"r1": engine.r1, "r2": engine.r2},
        "mean_distance": {
            "aligned": round(float(np.mean([p["aligned"]["distance"] for p in points])), 3),
            "photo": round(float(np.mean([p["photo"]["distance"] for p in points])), 3),
        },
    }
    record["identity"] = dict(
        identity_report(run.read_image("align", "aligned.png"), edited),
        compared="aligned photo vs edited face (dlib face recognition)",
    )
    if presets:
        record["presets"] = preset_report(align.aligned_landmarks, edited, presets)
    record.update(extra_record or {})
    if animate:
        frames.append(draw_points(edited, final, targets))
    with atomic_dir(run.stage("drag")) as tmp:
        Image.fromarray(edited).save(tmp / "edited.png")
        save_file({"w": state.w.detach().cpu().contiguous()}, str(tmp / "w_edited.safetensors"))
        before_panel = draw_points(before, handles, targets)
        after_panel = draw_points(edited, final, targets, starts=handles)
        Image.fromarray(np.hstack([before_panel, after_panel])).save(tmp / "preview.png")
        if mask is not None:
            Image.fromarray((mask * 255).astype(np.uint8)).save(tmp / "mask.png")
        if animate:
            target_path = animate if animate.is_absolute() or animate.parent != Path(".") else tmp / animate.name
            write_animation(target_path, frames)
            record["animation"] = str(
                animate if target_path != tmp / animate.name else run.stage("drag") / animate.name
            )
        record["files"] = file_digests(tmp, OWNED_FILES)
        DragRecord(record).save(tmp)
    return state


def preset_report(landmarks_aligned: np.ndarray, edited: np.ndarray, presets: Mapping[str, float]) -> dict:
    """drag.json "presets": the landmarks detected again on the edited face (align's dlib models)
    and, per preset, the requested vs achieved motion; a face not found again is said so."""
    report = {
        "amounts": dict(presets),
        "face_found": False,
        "measured": {},
        "compared": "landmarks of the aligned photo vs landmarks detected again on the edited face",
    }
    try:
        again = describe(edited, near=np.asarray(landmarks_aligned).mean(0)).landmarks
    except UsageError as exc:
        report["note"] = f"{exc}: achieved motion not measured"
        return report
    report["face_found"] = True
    report["measured"] = {m.name: m.to_json() for m in measure_presets(landmarks_aligned, again, presets)}
    return report


OWNED_FILES = ("edited.png", "w_edited.safetensors", "preview.png")  # besides drag.json
