"""The `drag` command on a run folder: a photo's run (points mapped into the aligned frame) or a
seed run (whose RUN/recipe.json records the drag too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from common.errors import UsageError
from drag.config import DragConfig
from drag.frame import DragFrame, load_frame
from drag.points import map_to_aligned, parse_circle, parse_drag
from drag.stage import run_drag
from pipeline.seeded import drag_seed_run


def check_drag_request(
    drags: Sequence[str], amounts: Mapping[str, float], mask_path: Optional[Path], mask_circle: Optional[str], animate
) -> None:
    """Refuse, before any loading, a request that cannot run."""
    if mask_path and mask_circle:
        raise UsageError("give either --mask or --mask-circle, not both")
    if animate and Path(animate).suffix.lower() not in (".gif", ".mp4"):
        raise UsageError("--animate needs a .gif or .mp4 file name")
    if not drags and not amounts:
        raise UsageError("give at least one --drag X1,Y1:X2,Y2 or --preset NAME=AMOUNT")


@dataclass(frozen=True)
class DragRequest:
    """A drag checked and read before the run folder's lock: its pairs, frame, presets and mask."""

    pairs: list
    amounts: Mapping[str, float]
    frame: DragFrame
    circle: Optional[tuple]
    mask_path: Optional[Path]


def prepare_drag(
    run_dir: Path,
    drags: Sequence[str],
    amounts: Mapping[str, float],
    mask_path: Optional[Path] = None,
    mask_circle: Optional[str] = None,
    animate: Optional[Path] = None,
) -> DragRequest:
    """Everything that can refuse the request without writing: the flags, then RUN_DIR's frame."""
    check_drag_request(drags, amounts, mask_path, mask_circle, animate)
    pairs = [parse_drag(d) for d in drags]
    frame = load_frame(run_dir)
    frame.check_presets(amounts, run_dir)
    circle = parse_circle(mask_circle) if mask_circle else None
    return DragRequest(pairs, dict(amounts), frame, circle, mask_path)


def drag_run_folder(
    run_dir: Path,
    request: DragRequest,
    config: DragConfig,
    *,
    coords: str,
    device,
    progress: bool = True,
    animate: Optional[Path] = None,
):
    """Drag RUN_DIR's inverted picture (the caller holds the run folder's lock); the final DragState."""
    frame, pairs, amounts = request.frame, request.pairs, request.amounts
    if frame.seed is not None:
        parts = {"coords": coords, "mask_circle": request.circle, "mask_path": request.mask_path}
        return drag_seed_run(
            run_dir, pairs, parts, config, device=device, progress=progress, presets=amounts, animate=animate
        )
    pts, mask = map_to_aligned(
        pairs,
        coords,
        frame.matrix,
        frame.size,
        frame.photo_size,
        request.circle,
        request.mask_path,
        presets=amounts,
        landmarks=frame.landmarks if amounts else None,
    )
    return run_drag(run_dir, pts, mask, config, device=device, animate=animate, progress=progress, presets=amounts)
