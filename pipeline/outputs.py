"""Where an edit writes: the default run folder, the refusal to overwrite inputs, the kept original."""

from __future__ import annotations

from pathlib import Path

from common.errors import UsageError
from common.fileio import copy_file, same_file, sha256_file

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
