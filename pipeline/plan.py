"""The `edit` command's plan: the recipe its flags describe and where each photo's edit goes.

Pure functions over the parsed flags, so the command line only parses, calls and prints.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from common.errors import UsageError
from drag.points import parse_circle, parse_drag
from inversion.config import make_config
from pipeline.outputs import edited_name
from pipeline.recipe import Recipe, check_faces, load_recipe, parse_recipe, with_presets
from pipeline.seeded import refuse_seed_options


def check_given(photos: Sequence[Path], recipe_path: Optional[Path], output: Optional[Path]) -> None:
    """The photo first, then -o: each named when missing (click's "Missing option '-o'" named the
    wrong thing when the photo was missing too)."""
    if not photos and not recipe_path:
        raise UsageError(
            "no photo given: name the photo to edit, e.g. `photodrag edit PHOTO --preset smile=0.5 -o OUT`"
        )
    if output is None:
        raise UsageError("no output given: add -o OUT, the edited photo to write (a folder for several photos)")


def base_recipe(recipe_path: Optional[Path], drags: Sequence[str], amounts: dict) -> Recipe:
    """The recipe file's (with the --preset amounts), or one made from --drag and --preset."""
    if recipe_path:
        recipe = load_recipe(recipe_path)
        if drags:
            raise UsageError("give the points either with --drag or in the recipe, not both")
        return with_presets(recipe, amounts) if amounts else recipe
    if not drags and not amounts:
        raise UsageError("give at least one --drag X1,Y1:X2,Y2 or --preset NAME=AMOUNT (or a --recipe)")
    if not drags and not any(amounts.values()):
        raise UsageError("nothing to drag: every preset amount is 0 and no --drag is given")
    pairs = [parse_drag(d) for d in drags]
    data = {"drags": [{"handle": list(p.handle), "target": list(p.target)} for p in pairs]} if pairs else {}
    return parse_recipe(dict(data, presets=amounts))


def recipe_from_flags(
    recipe_path: Optional[Path],
    drags: Sequence[str],
    amounts: dict,
    *,
    model: Optional[str] = None,
    mask_circle: Optional[str] = None,
    mask_path: Optional[Path] = None,
    face: Optional[str] = None,
    min_face: Optional[int] = None,
    steps: Optional[int] = None,
    blend: Optional[str] = None,
    invert: Optional[dict] = None,
    others: Optional[Mapping[str, Any]] = None,
) -> Recipe:
    """The recipe of an `edit` command line: the base recipe, then each given flag over it.
    A seed recipe refuses the flags it would ignore (pipeline.seeded.refuse_seed_options), `others`
    (the stage and output options: from_stage, jpeg_quality, ...) among them."""
    recipe = base_recipe(recipe_path, drags, amounts)
    if recipe.seed is not None:
        refuse_seed_options(dict(others or {}, face=face, min_face=min_face, blend=blend, **(invert or {})))
    if model:
        recipe = replace(recipe, model=model)
    if mask_circle and mask_path:
        raise UsageError("give either --mask or --mask-circle, not both")
    if mask_circle:
        recipe = replace(recipe, mask_circle=parse_circle(mask_circle), mask_path=None)
    if mask_path:
        recipe = replace(recipe, mask_path=str(mask_path), mask_circle=None)
    if face is not None:
        recipe = replace(recipe, face=parse_face(face))
    if min_face is not None:
        recipe = replace(recipe, min_face=min_face)
    if steps:
        recipe = replace(recipe, drag=dict(recipe.drag, steps=steps))
    if blend:
        recipe = replace(recipe, blend=blend)
    if invert:
        make_config(**dict(recipe.invert, **invert))  # refuse a bad combination before any work
        recipe = replace(recipe, invert=dict(recipe.invert, **invert))
    return check_faces(recipe)


def parse_face(face: str):
    """--face: 'largest', an index, 'all', or distinct indices '0,2' (a sorted tuple; one index is that index)."""
    if face in ("largest", "all"):
        return face
    parts = face.split(",")
    if not all(p.strip().isdigit() for p in parts) or len(set(int(p) for p in parts)) != len(parts):
        raise UsageError(f"--face must be 'largest', a face index, 'all' or distinct indices like 0,2; got {face!r}")
    indices = tuple(sorted(int(p) for p in parts))
    return indices[0] if len(indices) == 1 else indices


def plan_outputs(
    photos: Sequence[Path],
    recipe: Recipe,
    output: Path,
    *,
    cluster: str = "local",
    run_dir: Optional[Path] = None,
    ray_options: bool = False,
) -> Tuple[List[Path], bool, List[Tuple[Path, Path]]]:
    """The photos to edit (the recipe's when none given), whether they run as an album, and
    (photo, output) pairs; refuses flag combinations that do not fit the plan."""
    photos = list(photos) or ([Path(recipe.photo)] if recipe.photo else [])
    if not photos:
        raise UsageError('give a PHOTO (or a recipe with a "photo")')
    batch = len(photos) > 1 or cluster == "ray"
    if batch and (run_dir or (output.suffix and not output.is_dir())):
        raise UsageError("with several photos, -o must be a folder and --run-dir cannot be given")
    if not batch and ray_options:
        raise UsageError("--address and --workers go with --cluster ray")
    pairs = [(photo, output / edited_name(photo) if batch or output.is_dir() else output) for photo in photos]
    return photos, batch, pairs
