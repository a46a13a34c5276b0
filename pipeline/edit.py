"""The `edit` job: align -> invert -> drag -> composite in one run folder.

A finished stage is reused when what it was made from has not changed (photo, size and face
for align; aligned image, model and options for invert; inversion, points, mask and options
for drag); anything upstream that changed invalidates the stages after it.  `from_stage`
forces a recompute from that stage on.  Each stage writes its folder atomically, so an
interrupted edit leaves complete stages that the next run picks up.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from pipeline.errors import UsageError
from pipeline.fileio import copy_file, same_file, sha256_file, write_json
from pipeline.images import load_photo
from pipeline.recipe import Recipe
from pipeline.run import RunFolder

STAGES = ("align", "invert", "drag", "composite")
DEFAULT_MODEL = "ffhq-512"  # DragGAN's FFHQ model


@dataclass
class EditSummary:
    output: Path
    run_dir: Path
    seconds: Dict[str, float] = field(default_factory=dict)
    reused: Dict[str, bool] = field(default_factory=dict)
    cache_hit: Optional[bool] = None
    distances_photo: List[float] = field(default_factory=list)
    stop_reason: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    identity: Dict[str, Optional[float]] = field(default_factory=dict)
    profile: str = "full"
    face: Optional[str] = None                                     # the face's size in the photo

    def lines(self) -> List[str]:
        out = []
        for st in STAGES:
            if st in self.seconds:
                how = "reused" if self.reused.get(st) else f"{self.seconds[st]:.1f} s"
                if st == "invert" and not self.reused.get(st) and self.cache_hit:
                    how += " (cache hit)"
                if st == "invert" and self.profile != "full":
                    how += (f" ({self.profile} profile: fewer steps, a rougher likeness; "
                            "drop --preview for the final edit)")
                out.append(f"  {st:10s} {how}")
        if self.face:
            out.insert(0, f"  face       {self.face}")
        if self.distances_photo:
            out.append(f"  drag stopped ({self.stop_reason}); distance to targets: "
                       + ", ".join(f"{d:.1f}" for d in self.distances_photo) + " px in the photo")
        for what, d in self.identity.items():
            if d is not None:
                out.append(f"  identity distance, {what}: {d:.3f} ({'same person' if d < 0.6 else 'DIFFERENT?'}"
                           f" by dlib's 0.6 rule)")
        out.append(f"  run folder: {self.run_dir}")
        out.append(f"  output:     {self.output}")
        return out


OVERWRITE_HINT = "give another -o, or --overwrite-input to replace it (the original is then kept in the run folder)"


def check_outputs(pairs, others=()) -> None:
    """Refuse any output that is one of the inputs: a photo (of any pair) or another input file.

    `pairs` is [(photo, output), ...]; `others` are further inputs (recipe, mask) that may never
    be overwritten.  A photo written over its own edit needs `overwrite_input` in `run_edit`.
    """
    photos = [p for p, _ in pairs]
    for photo, out in pairs:
        for other in photos:
            if other != photo and same_file(out, other):
                raise UsageError(f"-o {out} is the input photo {other}: refusing to overwrite it; {OVERWRITE_HINT}")
        for other in others:
            if other is not None and same_file(out, other):
                raise UsageError(f"-o {out} is the input file {other}: refusing to overwrite it")


def keep_original(photo_path: Path, sha256: str, run_path: Path) -> Path:
    """Copy the photo to RUN_DIR/input/<stem>-<sha>.<ext> and return the copy, which the run then reads.

    Named by content, so a kept original is never replaced by a later edit of the same file.
    """
    photo_path = Path(photo_path)
    kept = Path(run_path) / "input" / f"{photo_path.stem}-{sha256[:12]}{photo_path.suffix}"
    if not (kept.is_file() and sha256_file(kept) == sha256):
        copy_file(photo_path, kept)
    return kept


def default_run_dir(home: Path, photo_path: Path, sha256: str) -> Path:
    return Path(home) / "runs" / f"{photo_path.stem}-{sha256[:12]}"


def _drag_points(recipe: Recipe, photo_size, matrix: np.ndarray, size: int):
    """Recipe points -> [N, 2, 2] aligned pixels (refusing points off the crop)."""
    from drag.points import DragPair, to_aligned
    pairs = [DragPair(tuple(h), tuple(t)) for h, t in recipe.drags]
    coords = recipe.coords
    if coords == "relative":
        w, h = photo_size
        pairs = [DragPair((p.handle[0] * w, p.handle[1] * h), (p.target[0] * w, p.target[1] * h)) for p in pairs]
        coords = "photo"
    return to_aligned(pairs, coords, matrix, size)


def _mask(recipe: Recipe, photo_size, matrix: np.ndarray, size: int) -> Optional[np.ndarray]:
    from drag.points import circle_mask, load_mask
    coords = "photo" if recipe.coords in ("photo", "relative") else "aligned"
    if recipe.mask_circle:
        x, y, r = recipe.mask_circle
        if recipe.coords == "relative":
            w, h = photo_size
            x, y, r = x * w, y * h, r * max(w, h)
        return circle_mask(x, y, r, coords, matrix, size)
    if recipe.mask_path:
        return load_mask(Path(recipe.mask_path), coords, matrix, size, photo_size)
    return None


def _inversion_config(recipe: Recipe):
    from inversion.config import make_config
    return make_config(**recipe.invert)


def run_edit(photo_path: Path, recipe: Recipe, output: Path, *, home: Path, device, store, cache,
             run_dir: Optional[Path] = None, from_stage: Optional[str] = None, jpeg_quality: Optional[int] = None,
             progress: bool = True, log: Callable[[str], None] = lambda msg: None,
             overwrite_input: bool = False, models=None) -> EditSummary:
    """Run the four stages for one photo; `overwrite_input` allows `output` to be the photo itself
    (the original is first kept as RUN_DIR/input/<name>, and the run and its recipe point at that copy).
    `models` (a pipeline.models.LoadedModels) supplies already-loaded networks, kept between photos."""
    from align.stage import describe_face, fresh_align, run_align
    from drag.engine import DragConfig
    from drag.stage import drag_warnings, fresh_drag, run_drag
    from inversion.perceptual import load_perceptual
    from inversion.stage import fresh_invert, run_invert
    from pipeline.composite import output_format, run_composite
    from weights.models import checkpoint_sha256, resolve_model_path
    from weights.registry import REGISTRY

    if from_stage is not None and from_stage not in STAGES:
        raise UsageError(f"--from must be one of {', '.join(STAGES)}")
    overwrite = same_file(output, photo_path)
    if overwrite and not overwrite_input:
        raise UsageError(f"-o {output} is the input photo: refusing to overwrite it; {OVERWRITE_HINT}")
    photo = load_photo(photo_path)  # bad input fails here, before anything is written
    output_format(Path(output), photo)
    model = recipe.model or (f"ffhq-{recipe.size}" if recipe.size and f"ffhq-{recipe.size}" in REGISTRY
                             else DEFAULT_MODEL)
    model_path = resolve_model_path(model, store)  # downloads on first use; a clear error when it can't
    model_sha = checkpoint_sha256(model_path)
    base_G = None

    def generator():
        nonlocal base_G
        if base_G is None and models is not None:
            base_G = models.generator(model_path, device)
        if base_G is None:
            from weights.checkpoint import load_generator
            base_G = load_generator(model_path, device)
        return base_G

    size = REGISTRY[model].resolution if model in REGISTRY else generator().img_resolution
    if recipe.size and recipe.size != size:
        raise UsageError(f"recipe asks for size {recipe.size} but the model {model} makes {size}px images")
    run = RunFolder(Path(run_dir) if run_dir else default_run_dir(home, photo.path, photo.sha256))
    if overwrite:
        kept = keep_original(photo.path, photo.sha256, run.path)
        log(f"the original photo is kept as {kept}")
        photo = load_photo(kept)
    summary = EditSummary(output=Path(output), run_dir=run.path)
    force = STAGES.index(from_stage) if from_stage else len(STAGES)

    def timed(stage: str, fn):
        log(f"[{STAGES.index(stage) + 1}/4] {stage}")
        t0 = time.perf_counter()
        value = fn()
        summary.seconds[stage] = round(time.perf_counter() - t0, 2)
        summary.reused[stage] = False
        return value

    def reuse(stage: str) -> None:
        log(f"[{STAGES.index(stage) + 1}/4] {stage}: reused")
        summary.seconds[stage] = 0.0
        summary.reused[stage] = True

    # align
    align = fresh_align(run.path, photo.sha256, size, recipe.face) if force > 0 else None
    if align is not None:
        reuse("align")
    else:
        timed("align", lambda: run_align(photo.path, run.path, size=size, face=recipe.face))
        align = run.read_json("align", "align.json")
    summary.warnings.extend(align.get("warnings", []))  # also when reused: a small face stays small
    summary.face = describe_face(align)
    matrix = np.array(align["matrix"])
    pts = _drag_points(recipe, photo.size, matrix, size)
    mask = _mask(recipe, photo.size, matrix, size)

    # invert
    config = _inversion_config(recipe)
    summary.profile = config.profile
    inv = fresh_invert(run.path, model_sha, config) if force > 1 and summary.reused.get("align") else None
    if inv is not None:
        reuse("invert")
        summary.cache_hit = inv.get("cache", {}).get("hit")
    else:
        perceptual = ((lambda net, r: models.perceptual(net, store, r, device)) if models is not None
                      else (lambda net, r: load_perceptual(net, store, r).to(device)))
        result = timed("invert", lambda: run_invert(run.path, generator(), model, model_sha, config, perceptual,
                                                    cache, progress=progress))
        summary.cache_hit = result.cache_hit
        summary.warnings.extend(result.warnings)
    summary.identity["photo vs reconstruction"] = run.read_json("invert", "invert.json").get(
        "identity", {}).get("distance")

    # drag
    drag_cfg = DragConfig(steps=recipe.drag["steps"], lr=recipe.drag["lr"], lambda_mask=recipe.drag["lambda_mask"],
                          r1=recipe.drag["r1"], r2=recipe.drag["r2"])
    request = _drag_request(pts, mask, drag_cfg)
    prev = fresh_drag(run.path, request) if force > 2 and summary.reused.get("invert") else None
    if prev is not None:
        reuse("drag")
    else:
        timed("drag", lambda: run_drag(run.path, pts, mask, drag_cfg, device=device, progress=progress,
                                       extra_record={"request": request}))
    drag = run.read_json("drag", "drag.json")
    summary.distances_photo = [p["photo"]["distance"] for p in drag["points"]]
    summary.stop_reason = drag["stop_reason"]
    summary.identity["photo vs edited"] = drag.get("identity", {}).get("distance")
    if not summary.reused.get("drag"):
        summary.warnings.extend(drag_warnings(run.path))

    # composite
    timed("composite", lambda: run_composite(run.path, Path(output), jpeg_quality))
    ran = recipe.to_json()
    ran.update(photo=str(photo.path.resolve()), model=model if model in REGISTRY else str(Path(model).resolve()),
               invert=config.options())
    if recipe.mask_path:
        ran["mask"] = {"path": str(Path(recipe.mask_path).resolve())}
    write_json(run.path / "recipe.json", ran)
    return summary


def _drag_request(pts: np.ndarray, mask: Optional[np.ndarray], cfg) -> dict:
    import dataclasses
    return {"points": np.round(pts, 4).tolist(),
            "mask_sha256": None if mask is None else hashlib.sha256(mask.astype(np.uint8).tobytes()).hexdigest(),
            "config": dataclasses.asdict(cfg)}
