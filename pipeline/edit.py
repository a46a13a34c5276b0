"""The `edit` job: align -> invert -> drag -> composite in one run folder.

A finished stage is reused when its record says it is fresh (photo, size and face for align;
aligned image, model and options for invert; inversion, points, mask and options for drag);
anything upstream that ran again invalidates the stages after it.  `from_stage` forces a
recompute from that stage on.  Each stage writes its folder atomically, so an interrupted
edit leaves complete stages that the next run picks up.

The edit holds its run folder's lock from start to end (another edit of the same folder waits, or
fails with `wait=False`), keeps the cache entries it reads pinned, and first sweeps what killed
runs left behind (temp files in the run folder, beside the output, in the cache).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple

from align.group import DetectRecord, choose_faces, detect_faces, face_box, save_detect
from align.record import AlignRecord
from align.stage import run_align
from common.errors import UsageError
from common.fileio import same_file, sweep_temps, swept_line, write_json
from common.images import Photo, load_photo
from common.run import check_run_folder, locked_run
from drag.points import DragPair, map_to_aligned
from drag.record import DragRecord, drag_request
from drag.stage import run_drag
from inversion.record import InversionRecord
from inversion.stage import run_invert
from pipeline.composite import output_format, run_composite
from pipeline.group import FacePart, run_group_composite
from pipeline.models import LoadedModels, open_models
from pipeline.outputs import OVERWRITE_HINT, check_run_paths, default_run_dir, keep_original
from pipeline.recipe import Recipe
from pipeline.summary import STAGES, EditSummary, StageRunner
from weights.models import model_for


def run_edit(
    photo_path: Path,
    recipe: Recipe,
    output: Path,
    *,
    home: Path,
    device,
    store,
    cache,
    run_dir: Optional[Path] = None,
    from_stage: Optional[str] = None,
    jpeg_quality: Optional[int] = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
    overwrite_input: bool = False,
    models: Optional[LoadedModels] = None,
    inputs: Iterable[Optional[Path]] = (),
    wait: bool = True,
    notify: Callable[[str], None] = lambda msg: None,
) -> EditSummary:
    """Run the four stages for one photo; `overwrite_input` allows `output` to be the photo itself
    (the original is first kept as RUN_DIR/input/<name>, and the run and its recipe point at that copy).
    `models` supplies already-loaded networks, kept between photos (a fresh LoadedModels by default);
    every file the run needs is checked before any stage runs (`open_models`).
    `inputs` are further files the run must never overwrite (the recipe file); `wait` False fails at
    once when another process holds the run folder (`notify` tells the user when it waits)."""
    photo, run_path, overwrite = _check_inputs(
        photo_path, recipe, output, home, run_dir, from_stage, inputs, overwrite_input
    )
    config = recipe.inversion_config()
    opened = open_models(model_for(recipe.model, recipe.size), store, device, config.perceptual_nets(), loaded=models)
    model, model_sha, size, generator = (
        opened.chosen.name,
        opened.chosen.sha256,
        opened.chosen.resolution,
        opened.generator,
    )
    if recipe.size and recipe.size != size:
        raise UsageError(f"recipe asks for size {recipe.size} but the model {model} makes {size}px images")
    with contextlib.ExitStack() as hold:
        run = hold.enter_context(locked_run(run_path, wait=wait, notify=notify))
        if cache is not None:
            hold.enter_context(cache.pinned())  # no other edit evicts the entry this one reads
        output = Path(output)
        _sweep(run.path, output, cache, log)
        plan = plan_faces(run.path, photo, recipe, size, from_stage, log) if recipe.several_faces else None
        if overwrite:
            kept = keep_original(photo.path, photo.sha256, run.path)
            log(f"the original photo is kept as {kept}")
            photo = dataclasses.replace(photo, path=kept)
        stages = StageRunner(EditSummary(output=output, run_dir=run.path), from_stage, log)
        invert = lambda path: run_invert(
            path, generator(), model, model_sha, config, opened.perceptual, cache, progress=progress
        )
        face = FaceStages(photo, size, model_sha, config, invert, device, progress)
        _run_stages(stages, run.path, face, recipe, plan, output, jpeg_quality, from_stage, log)
        write_json(run.path / "recipe.json", recipe.as_ran(photo.path, model, config))
        return stages.summary


def _run_stages(stages: StageRunner, run_path: Path, face, recipe: Recipe, plan, output, jpeg_quality, from_stage, log):
    """One face (align, invert, drag in RUN_DIR) or several (`plan`'s, each in RUN_DIR/faces/N), then the composite."""
    if plan is not None:
        parts, skipped = _edit_faces(stages, run_path, face, plan, from_stage, log)
        _group_composite(stages, run_path, output, jpeg_quality, face.photo, recipe, parts, skipped)
    else:
        _edit_face(stages, run_path, face, recipe)
        _composite(stages, run_path, output, jpeg_quality, face.photo, recipe)


@dataclass(frozen=True)
class FaceStages:
    """What the align, invert and drag stages of one face need besides its run folder and recipe."""

    photo: Photo
    size: int
    model_sha: str
    config: object  # InversionConfig
    invert: Callable[[Path], object]  # run folder -> the invert stage's result
    device: object
    progress: bool


def _edit_face(stages: StageRunner, run_path: Path, face: FaceStages, recipe: Recipe, faces=None) -> None:
    """Align, invert and drag one face in `run_path` (each stage reused when fresh); `faces` are the
    photo's faces already detected (a several-face edit), else the align stage detects them."""
    pts, mask = _align(stages, run_path, face.photo, face.size, recipe, faces)
    _invert(stages, run_path, face.model_sha, face.config, lambda: face.invert(run_path))
    _drag(stages, run_path, pts, mask, recipe, face.device, face.progress)


def _check_inputs(photo_path, recipe: Recipe, output, home, run_dir, from_stage, inputs, overwrite_input: bool):
    """The decoded photo, the run folder and whether `output` is the photo itself, after refusing
    bad input before anything is written (the photo is decoded once)."""
    if from_stage is not None and from_stage not in STAGES:
        raise UsageError(f"--from must be one of {', '.join(STAGES)}")
    overwrite = same_file(output, photo_path)
    if overwrite and not overwrite_input:
        raise UsageError(f"-o {output} is the input photo: refusing to overwrite it; {OVERWRITE_HINT}")
    photo = load_photo(photo_path)
    output_format(Path(output), photo)
    run_path = Path(run_dir) if run_dir else default_run_dir(home, photo.path, photo.sha256, recipe.to_json())
    check_run_folder(run_path)  # a user's own folder is refused before anything else is said about it
    check_run_paths(run_path, [photo.path, recipe.mask_path, *inputs], output)
    return photo, run_path, overwrite


def _align(stages: StageRunner, run_path: Path, photo, size: int, recipe: Recipe, faces=None):
    """The align stage (reused when fresh), then the recipe's points and mask in aligned pixels."""
    summary = stages.summary
    fresh = lambda: (a := AlignRecord.read_intact(run_path)) is not None and a.is_fresh(photo.sha256, size, recipe.face)
    stages.stage("align", fresh, lambda: run_align(photo, run_path, size=size, face=recipe.face, faces=faces))
    align = AlignRecord.load(run_path)
    summary.warnings.extend(align.warnings)  # also when reused: a small face stays small
    summary.face = align.describe()
    pairs = [DragPair(tuple(h), tuple(t)) for h, t in recipe.drags]
    return map_to_aligned(
        pairs,
        recipe.coords,
        align.matrix,
        size,
        photo.size,
        recipe.mask_circle,
        recipe.mask_path,
        presets=recipe.presets,
        landmarks=align.aligned_landmarks if align.has_landmarks else None,
    )


def _invert(stages: StageRunner, run_path: Path, model_sha: str, config, invert: Callable[[], object]) -> None:
    """The invert stage: reused when the record is fresh for this model and these options."""
    summary = stages.summary
    summary.profile = config.profile
    fresh = lambda: (i := InversionRecord.read_intact(run_path)) is not None and i.is_fresh(model_sha, config)
    result = stages.stage("invert", fresh, invert)
    inversion = InversionRecord.load(run_path)
    summary.cache_hit = inversion.cache_hit if result is None else result.cache_hit
    summary.warnings.extend(result.warnings if result is not None else [])
    summary.identity["photo vs reconstruction"] = inversion.identity_distance


def _drag(stages: StageRunner, run_path: Path, pts, mask, recipe: Recipe, device, progress: bool) -> None:
    """The drag stage: reused when the record's request (points, mask, options, presets) is this one."""
    summary = stages.summary
    drag_cfg = recipe.drag_config()
    request = drag_request(pts, mask, drag_cfg, recipe.presets)
    ran = stages.stage(
        "drag",
        lambda: (d := DragRecord.read_intact(run_path)) is not None and d.is_fresh(request),
        lambda: run_drag(
            run_path,
            pts,
            mask,
            drag_cfg,
            device=device,
            progress=progress,
            extra_record={"request": request},
            presets=recipe.presets,
        ),
    )
    dragged = DragRecord.load(run_path)
    summary.distances_photo, summary.stop_reason = dragged.distances_photo, dragged.stop_reason
    summary.drag_steps = dragged.steps
    summary.identity["photo vs edited"] = dragged.identity_distance
    summary.presets = dragged.preset_table()
    summary.warnings.extend(dragged.warnings() if ran is not None else [])


def _composite(stages: StageRunner, run_path: Path, output: Path, jpeg_quality, photo, recipe: Recipe) -> None:
    """The composite stage: always run (it writes OUTPUT, which the run folder does not own)."""
    composited = stages.stage(
        "composite", lambda: False, lambda: run_composite(run_path, output, jpeg_quality, photo, recipe.blend)
    )
    stages.summary.identity["photo vs output photo"] = composited.identity_distance
    stages.summary.composite = composited.describe()


@dataclass(frozen=True)
class FacePlan:
    """Which faces a several-face edit edits (each with its one-face recipe) and why the others are not,
    from the photo's faces: RUN/detect/'s record when fresh, else found again (`new`: not yet written)."""

    detected: DetectRecord
    new: bool
    edits: Tuple[Tuple[int, Recipe], ...]
    skipped: Dict[int, str]


def plan_faces(run_path: Path, photo: Photo, recipe: Recipe, size: int, from_stage, log) -> FacePlan:
    """The faces to edit, decided before anything is written: a face choice the photo cannot meet (an
    index it does not have, in --face or the recipe's "faces"; every face too small or with nothing to
    edit) is refused with the run folder as it was (RUN/detect/ is written by `_edit_faces`)."""
    detected = DetectRecord.read_intact(run_path)
    new = detected is None or not detected.is_fresh(photo.sha256) or from_stage == "align"
    log("detect: every face of the photo" if new else "detect: reused")
    detected = detect_faces(photo) if new else detected
    choice, found = choose_faces(detected.faces, recipe.face, size, recipe.min_face), len(detected.faces)
    absent = sorted(n for n in recipe.face_edits if n >= found)
    if absent:
        raise UsageError(
            f'the recipe\'s "faces" names face {absent[0]}, which is out of range: {found} face(s) found '
            f"(indices 0..{found - 1}; see `align --list-faces`)"
        )
    skipped, edits = dict(choice.skipped), []
    for n in choice.chosen:
        one = recipe.for_face(n)
        if not one.drags and not any(one.presets.values()):
            skipped[n] = 'nothing to edit: no top-level presets, and no entry in the recipe\'s "faces"'
        else:
            edits.append((n, one))
    if not edits:
        raise UsageError("no face to edit: " + "; ".join(f"face {n} {why}" for n, why in sorted(skipped.items())))
    return FacePlan(detected, new, tuple(edits), skipped)


def _edit_faces(stages: StageRunner, run_path: Path, face: FaceStages, plan: FacePlan, from_stage, log):
    """Several faces: RUN/detect/ (written when the plan found the faces again), then align, invert and
    drag of each planned face in RUN/faces/N/; returns the edited faces and the skipped ones (composite.json's)."""
    summary, photo = stages.summary, face.photo
    detected = save_detect(plan.detected, photo, run_path) if plan.new else plan.detected
    faces, skipped, parts = detected.faces, plan.skipped, []
    for n, one in plan.edits:
        runner = StageRunner(EditSummary(summary.output, run_path / "faces" / str(n)), from_stage, _prefixed(log, n))
        _edit_face(runner, runner.summary.run_dir, face, one, faces)
        summary.faces[n] = runner.summary
        summary.warnings.extend(f"face {n}: {w}" for w in runner.summary.warnings)
        parts.append(FacePart(n, runner.summary.run_dir, _stage_states(runner.summary)))
    summary.skipped = dict(skipped)
    summary.warnings.extend(f"face {n} skipped: {why}" for n, why in sorted(skipped.items()))
    return parts, [{"face": n, "box": face_box(faces[n]), "reason": why} for n, why in sorted(skipped.items())]


def _prefixed(log: Callable[[str], None], n: int) -> Callable[[str], None]:
    return lambda msg: log(f"face {n}: {msg}")


def _stage_states(summary: EditSummary) -> dict:
    return {st: "reused" if summary.reused.get(st) else "ran" for st in summary.seconds}


def _group_composite(stages: StageRunner, run_path: Path, output: Path, jpeg_quality, photo, recipe, parts, skipped):
    """The composite stage of several faces: one pass over the photo, one output (pipeline/group.py)."""
    composited = stages.stage(
        "composite",
        lambda: False,
        lambda: run_group_composite(run_path, output, parts, photo, recipe.blend, jpeg_quality, skipped),
    )
    summary = stages.summary
    summary.composite = composited.describe()
    summary.warnings.extend(composited.warnings)
    for entry in composited.faces:
        summary.faces[entry["face"]].identity["photo vs output photo"] = entry["identity"]["photo vs output photo"]


def _sweep(run_path: Path, output: Path, cache, log: Callable[[str], None]) -> None:
    """Remove what killed runs left: stage temp folders in the run folder (and in each face's of a
    several-face edit), temp files beside the output and in the cache (only orphans: owner gone,
    older than the grace period)."""
    removed = sweep_temps(run_path) + sweep_temps(run_path / "input")
    for face_dir in sorted((run_path / "faces").glob("*")) if (run_path / "faces").is_dir() else []:
        removed += sweep_temps(face_dir)
    removed += sweep_temps(output.parent, targets=[output.name])
    removed += cache.sweep() if cache is not None else []
    if removed:
        log(swept_line(removed))
