"""The drag stage on disk: RUN_DIR/invert/ -> RUN_DIR/drag/.

Files: edited.png, w_edited.safetensors, drag.json (points in aligned and photo pixels,
final handles and distances, steps, stop reason (drag.record.STOP_REASONS), seconds),
preview.png (before | after with arrows), and optionally an animation of the steps (.gif or .mp4).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from align.identity import describe, identity_report
from common.fileio import atomic_dir, file_digests
from common.geometry import apply_matrix, matrix_scale
from common.run import RunFolder
from drag.draw import before_after, draw_points, write_animation
from drag.engine import DragConfig, DragEngine, DragState
from drag.frame import DragFrame, load_frame
from drag.presets import preset_report
from drag.record import DragRecord
from inversion.stage import load_inversion

FORMAT_VERSION = 1
OWNED_FILES = ("edited.png", "w_edited.safetensors", "preview.png")  # besides drag.json


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
    frame = load_frame(run.path)
    w_pivot, G, _ = load_inversion(run.path, device)
    handles, targets = pairs_aligned[:, 0], pairs_aligned[:, 1]
    w0 = w_pivot if w_start is None else w_start.to(w_pivot.device)
    engine = DragEngine(G, w0, handles, targets, mask=mask, config=config)
    before = engine.render(engine.start())
    frames = [draw_points(before, handles, targets)] if animate else None
    t0 = time.perf_counter()
    state = _drive(engine, targets, progress, callback, should_stop, frames, frame_every)
    seconds = time.perf_counter() - t0
    edited = engine.render(state)
    final = state.handles.cpu().numpy().astype(np.float64)
    points = point_report(handles, targets, final, frame.inverse)
    record = _record(run, engine, state, points, mask, seconds, w_start is None)
    record["identity"] = _identity(run, frame, edited)
    if presets:
        record["presets"] = preset_report(frame.landmarks, edited, presets, landmarks_again)
    record.update(extra_record or {})
    if frames is not None:
        frames.append(draw_points(edited, final, targets))
    preview = before_after(before, edited, handles, targets, final)
    _write_stage(run, record, state, edited, preview, mask, animate, frames)
    return state


def _identity(run: RunFolder, frame: DragFrame, edited: np.ndarray) -> dict:
    """drag.json "identity": the picture the drag began from vs the edit (dlib face recognition), or
    why it was skipped (a seed picture with no face)."""
    if frame.no_face is not None:
        return {"distance": None, "skipped": frame.no_face}
    what = "aligned photo" if frame.seed is None else "generated picture"
    face = "face" if frame.seed is None else "picture"
    return dict(
        identity_report(run.read_image(*frame.reference), edited),
        compared=f"{what} vs edited {face} (dlib face recognition)",
    )


def _drive(
    engine: DragEngine,
    targets: np.ndarray,
    progress: bool,
    callback: Optional[Callable[[DragState], None]],
    should_stop: Optional[Callable[[], bool]],
    frames: Optional[List[np.ndarray]],
    frame_every: int,
) -> DragState:
    """Step the engine until it is done or `should_stop()` says so, with a progress bar; every
    `frame_every` steps a picture of the handles goes to `frames` (None: no animation)."""
    bar = tqdm(total=engine.cfg.steps, desc="drag", unit="step", leave=False, disable=not progress, dynamic_ncols=True)
    state = engine.start()
    with bar:
        while not state.done:
            if should_stop is not None and should_stop():
                state = dataclasses.replace(state, done=True, reason="stopped")
                break
            state = engine.step(state)
            bar.update(1)
            bar.set_postfix(distance=f"{sum(state.distances):.1f}px", refresh=False)
            if frames is not None and state.step % frame_every == 0 and not state.done:
                frames.append(draw_points(engine.render(state), state.handles.tolist(), targets))
            if callback is not None:
                callback(state)
    return state


def point_report(handles: np.ndarray, targets: np.ndarray, final: np.ndarray, inverse) -> List[dict]:
    """drag.json "points": each handle, target, final position and distance left, in aligned
    pixels and in photo pixels (`inverse`: the aligned -> photo matrix)."""
    scale = matrix_scale(inverse)
    to_photo = lambda p: apply_matrix(inverse, p).round(2).tolist()
    points = []
    for h, t, f in zip(handles, targets, final):
        d = float(np.linalg.norm(f - t))
        points.append(
            {
                "aligned": {"handle": h.tolist(), "target": t.tolist(), "final": f.tolist(), "distance": round(d, 3)},
                "photo": {
                    "handle": to_photo(h),
                    "target": to_photo(t),
                    "final": to_photo(f),
                    "distance": round(d * scale, 3),
                },
            }
        )
    return points


def _record(
    run: RunFolder,
    engine: DragEngine,
    state: DragState,
    points: List[dict],
    mask: Optional[np.ndarray],
    seconds: float,
    from_pivot: bool,
) -> dict:
    """drag.json's measurements of a finished drag (identity, presets and files are added after)."""
    return {
        "format_version": FORMAT_VERSION,
        "invert_sha256": run.file_sha256("invert", "invert.json"),
        "points": points,
        "mask": mask is not None,
        "steps": state.step,
        "stop_reason": state.reason,
        "seconds": round(seconds, 2),
        "start": "pivot" if from_pivot else "previous edit",
        "ms_per_step": round(1000 * seconds / max(state.step, 1), 1),
        "config": dataclasses.asdict(engine.cfg),
        "radii_px": {"r1": engine.r1, "r2": engine.r2},
        "mean_distance": {
            "aligned": round(float(np.mean([p["aligned"]["distance"] for p in points])), 3),
            "photo": round(float(np.mean([p["photo"]["distance"] for p in points])), 3),
        },
    }


def _write_stage(
    run: RunFolder,
    record: dict,
    state: DragState,
    edited: np.ndarray,
    preview: np.ndarray,
    mask: Optional[np.ndarray],
    animate: Optional[Path],
    frames: Optional[List[np.ndarray]],
) -> None:
    """RUN_DIR/drag/ all at once; a bare `animate` file name goes inside it, a path where it says."""
    with atomic_dir(run.stage("drag")) as tmp:
        Image.fromarray(edited).save(tmp / "edited.png")
        save_file({"w": state.w.detach().cpu().contiguous()}, str(tmp / "w_edited.safetensors"))
        Image.fromarray(preview).save(tmp / "preview.png")
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


def landmarks_again(rgb: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The 68 landmarks of the face nearest `near` in `rgb` (align's dlib models; UsageError when
    there is none): how preset_report finds the edited face's landmarks."""
    return describe(rgb, near=near).landmarks
