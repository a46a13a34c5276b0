"""Where an edit writes: the default run folder, the refusal to overwrite inputs, the kept original."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Optional

from common.errors import UsageError
from common.fileio import copy_file, same_file, sha256_file
from common.run import owned_by_run

OVERWRITE_HINT = "give another -o, or --overwrite-input to replace it (the original is then kept in the run folder)"


def edited_name(photo: Path, ext: Optional[str] = None) -> str:
    """The one name of an edited photo: `<stem>_edited<ext>` (the photo's own extension by default)."""
    photo = Path(photo)
    return f"{photo.stem}_edited{photo.suffix if ext is None else ext}"


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


def recipe_fingerprint(recipe_json: dict) -> str:
    """8 hex digits of the recipe (without its photo path): different edits get different run folders."""
    data = {k: v for k, v in recipe_json.items() if k != "photo"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


def default_run_dir(home: Path, photo_path: Path, sha256: str, recipe_json: Optional[dict] = None) -> Path:
    """$HOME/runs/<photo>-<photo hash>-<recipe fingerprint>: one folder per photo and edit, so that
    another edit of the same photo never shares (and overwrites) it; a repeated edit reuses it."""
    tail = "" if recipe_json is None else f"-{recipe_fingerprint(recipe_json)}"
    return Path(home) / "runs" / f"{Path(photo_path).stem}-{sha256[:12]}{tail}"


def check_run_paths(run_path: Path, inputs: Iterable[Optional[Path]], output: Optional[Path] = None) -> None:
    """Refuse an input (photo, recipe, mask) or the output that lies among the run folder's own files,
    which the run replaces or rewrites (a stage folder, RUN/recipe.json): an input is never overwritten."""
    for path in inputs:
        why = None if path is None else owned_by_run(run_path, Path(path))
        if why is not None:
            raise UsageError(
                f"the input {path} is one of the run folder's own files ({why}): refusing to overwrite it; "
                "copy it out of the run folder, or give another run folder"
            )
    why = None if output is None else owned_by_run(run_path, Path(output), output=True)
    if why is not None:
        raise UsageError(f"-o {output} is one of the run folder's own files ({why}); give an output outside them")
