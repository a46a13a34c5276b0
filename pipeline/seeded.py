"""DragGAN's own workflow: start from a seed of a generator, drag points, keep the image and its latent.

`start_from_seed` writes a run folder whose inversion is the generated latent (inversion/seed.py);
`drag` works on it unchanged.  `seed_recipe` is the RUN/recipe.json a seed run's drag leaves
(model, seed, psi, points, mask, options), and `replay_seed_recipe` is what `edit --recipe` does
with it: the same start and the same drag, the edited picture written to OUTPUT (PNG, the same
bytes).  There is no photo, so nothing is composited (`refuse_composite`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple

import numpy as np

from align.identity import describe
from common.errors import UsageError
from common.fileio import copy_file, write_json
from common.run import check_run_folder, locked_run
from drag.config import DragConfig
from drag.frame import load_frame
from drag.points import DragPair, map_to_aligned
from drag.record import drag_request
from drag.stage import run_drag
from inversion.record import InversionRecord
from inversion.seed import run_seed
from pipeline.models import LoadedModels, OpenModels, open_models
from pipeline.outputs import check_run_paths, recipe_fingerprint
from pipeline.recipe import Recipe, drag_section
from weights.registry import DEFAULT_MODEL, FACES, REGISTRY


def face_landmarks(rgb: np.ndarray) -> Optional[np.ndarray]:
    """The 68 landmarks of the largest face dlib finds in `rgb`, or None."""
    try:
        return describe(rgb).landmarks
    except UsageError:
        return None


def check_seed(seed: int, psi: float) -> None:
    """Refuse, in one line, a seed outside NVIDIA's range or a psi that is not a finite number."""
    if seed < 0 or seed >= 2**32:
        raise UsageError("--seed must be in [0, 2**32)")
    if not np.isfinite(psi):
        raise UsageError(f"--trunc must be a finite number, not {psi}")


# `edit` options that mean nothing for a generated start, each with why (refuse_seed_options); the
# recipe's own keys for them are refused by pipeline/recipe.py.  --drag/--preset, --model, --steps,
# --mask and --mask-circle (the picture's pixels), --run-dir and --no-wait do apply to a seed run.
NO_PHOTO = "a seed recipe starts from a generated picture, not a photo"
SEED_REFUSED = {
    "face": f"{NO_PHOTO}: there are no faces in a photo to choose (the whole picture is dragged)",
    "min_face": f"{NO_PHOTO}: there are no faces in a photo to choose (the whole picture is dragged)",
    "blend": f"{NO_PHOTO}: nothing is composited back (the output is the generated picture)",
    "profile": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "w_plus": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "projection_steps": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "tuning_steps": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "lpips_threshold": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "projection_lpips": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "keep_projection_noise": f"{NO_PHOTO}: nothing is inverted (its latent is mapping(z(seed), psi))",
    "seed": f"{NO_PHOTO}: --seed seeds an inversion; the picture's seed is the recipe's \"seed\" section",
    "from_stage": f"{NO_PHOTO}: its seed start and drag are always made again (there is no align, invert "
    "or composite stage)",
    "jpeg_quality": f"{NO_PHOTO}: the output is a PNG",
    "overwrite_input": f"{NO_PHOTO}: there is no input photo to overwrite",
    "cluster": f"{NO_PHOTO}: it is one picture made here, not an album",
    "address": f"{NO_PHOTO}: it is one picture made here, not an album on Ray",
    "workers": f"{NO_PHOTO}: it is one picture made here, not an album on Ray",
}
SEED_FLAG_NAMES = {"profile": "--preview", "from_stage": "--from"}  # else --name-with-dashes


def refuse_seed_options(given: Mapping[str, Any]) -> None:
    """Refuse, in one line naming it, the first `edit` option given (a value not None, False or
    "local") that a seed recipe would ignore (SEED_REFUSED); `given` maps option names to values."""
    for name, why in SEED_REFUSED.items():
        if given.get(name) not in (None, False, "local"):
            flag = SEED_FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
            raise UsageError(f"{flag} does not apply: {why}")


def may_draw_faces(model: str) -> bool:
    """Whether pictures of `model` may hold a face (a face model, or a file of unknown subject)."""
    entry = REGISTRY.get(model)
    return (entry.subject if entry is not None else None) in (None, FACES)


def start_from_seed(
    run_dir: Path, model: str, seed: int, psi: float, *, store, device, loaded: Optional[LoadedModels] = None
) -> InversionRecord:
    """RUN_DIR/invert/ for `seed` of `model` (registry name or file); the caller holds the run folder.
    A RUN/recipe.json of an earlier start is removed: it no longer describes the run."""
    check_seed(seed, psi)
    opened = open_models(model, store, device, loaded=loaded, landmarks=may_draw_faces(model))
    return seed_opened(run_dir, opened, seed, psi)


def seed_opened(run_dir: Path, opened: OpenModels, seed: int, psi: float) -> InversionRecord:
    """`start_from_seed` with the generator already opened (the web editor's models)."""
    check_seed(seed, psi)
    model = opened.chosen.name
    entry = REGISTRY.get(model)
    subject = entry.subject if entry is not None else None
    maybe_face = may_draw_faces(model)
    record = run_seed(
        Path(run_dir),
        opened.generator(),
        opened.chosen,
        seed,
        psi,
        subject=subject,
        note=entry.note if entry is not None else None,
        find_landmarks=face_landmarks if maybe_face else None,
    )
    (Path(run_dir) / "recipe.json").unlink(missing_ok=True)
    return record


def seed_line(record: InversionRecord) -> str:
    """What `seed` made, in one line: the start, the picture, whether presets can work."""
    s = record.start or {}
    res = record.resolution
    if s.get("landmarks") is not None:
        face = "a face was found (presets work)"
    elif s.get("subject") not in (None, FACES):
        face = f"draws {s['subject']} (drag points; presets are for faces)"
    else:
        face = "no face found (drag points; presets need a face)"
    return f"{record.start_line()}: {res}x{res}, W+ latent; {face}"


def seed_recipe(
    record: InversionRecord,
    pairs,
    coords: str,
    mask_circle: Optional[Tuple[float, float, float]],
    mask_path: Optional[Path],
    config: DragConfig,
    presets: dict,
) -> dict:
    """RUN/recipe.json of a seed run's drag: what `edit --recipe` needs to make the same bytes again."""
    model = record.model_name
    recipe = Recipe(
        drags=tuple((tuple(p.handle), tuple(p.target)) for p in pairs),
        presets=dict(presets),
        coords=coords,
        model=model if model in REGISTRY else str(Path(model).resolve()),
        mask_circle=mask_circle,
        mask_path=str(Path(mask_path).resolve()) if mask_path else None,
        drag=drag_section(config),
        seed={"seed": record.start["seed"], "psi": record.start["psi"]},
    )
    out = recipe.to_json()
    for key in ("align", "invert", "composite"):  # a seed run has no photo: nothing to align, invert or composite
        out.pop(key)
    return out


def drag_seed_run(
    run_dir: Path,
    pairs,
    recipe_parts: dict,
    config: DragConfig,
    *,
    device,
    progress: bool,
    presets: dict,
    animate: Optional[Path] = None,
):
    """The drag of a seed run as `drag` and `edit --recipe` make it; RUN/recipe.json records it.
    `recipe_parts`: coords, mask_circle and mask_path as given."""
    frame = load_frame(run_dir)
    frame.check_presets(presets, run_dir)
    pts, mask = map_to_aligned(
        list(pairs),
        recipe_parts["coords"],
        frame.matrix,
        frame.size,
        frame.photo_size,
        recipe_parts.get("mask_circle"),
        recipe_parts.get("mask_path"),
        presets=presets,
        landmarks=frame.landmarks,
    )
    request = drag_request(pts, mask, config, presets)
    state = run_drag(
        run_dir,
        pts,
        mask,
        config,
        device=device,
        animate=animate,
        progress=progress,
        extra_record={"request": request},
        presets=presets,
    )
    record = InversionRecord.load(run_dir)
    write_json(
        Path(run_dir) / "recipe.json", seed_recipe(record, pairs, config=config, presets=presets, **recipe_parts)
    )
    return state


def replay_seed_recipe(
    recipe: Recipe,
    output: Path,
    *,
    home: Path,
    store,
    device,
    run_dir: Optional[Path] = None,
    progress: bool = True,
    notify: Callable[[str], None] = lambda msg: None,
    loaded: Optional[LoadedModels] = None,
    inputs: Iterable[Optional[Path]] = (),
    wait: bool = True,
) -> Path:
    """`edit --recipe` of a seed recipe: the seed start and the drag in a run folder (RUN_DIR, else
    HOME/runs/seed-<seed>-<recipe fingerprint>), then drag/edited.png copied to OUTPUT; returns the run."""
    if Path(output).suffix.lower() != ".png":
        raise UsageError(f"-o {output}: a seed run's result is the generated picture; name the output .png")
    model = recipe.model or DEFAULT_MODEL
    recipe = dataclasses.replace(recipe, model=model)
    run_path = Path(run_dir) if run_dir else Path(home) / "runs" / f"seed-{recipe.seed['seed']}-{_fingerprint(recipe)}"
    check_run_folder(run_path)
    check_run_paths(run_path, [recipe.mask_path, *inputs], output)
    with locked_run(run_path, create=True, wait=wait, notify=notify):
        start_from_seed(
            run_path, model, recipe.seed["seed"], recipe.seed["psi"], store=store, device=device, loaded=loaded
        )
        parts = {"coords": recipe.coords, "mask_circle": recipe.mask_circle, "mask_path": recipe.mask_path}
        pairs = [DragPair(tuple(h), tuple(t)) for h, t in recipe.drags]
        drag_seed_run(
            run_path, pairs, parts, recipe.drag_config(), device=device, progress=progress, presets=recipe.presets
        )
        copy_file(run_path / "drag" / "edited.png", output)
    return run_path


def _fingerprint(recipe: Recipe) -> str:
    return recipe_fingerprint(recipe.to_json())


def refuse_composite(run_dir: Path) -> None:
    """One line when RUN_DIR began from a seed: there is no photo to put the edit back into."""
    path = Path(run_dir) / "invert" / InversionRecord.FILE
    if not path.is_file():
        return
    record = InversionRecord.load(run_dir)
    if record.start is not None:
        raise UsageError(
            f"{run_dir} began from {record.start_line()}, not a photo: there is no photo to composite; "
            f"the edit is {Path(run_dir) / 'drag' / 'edited.png'} (latent: w_edited.safetensors)"
        )
