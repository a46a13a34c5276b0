"""The run folder: where each stage's files live, and reading them with clear errors.

RUN_DIR/align/   aligned.png  align.json  preview.png
RUN_DIR/invert/  pivot.safetensors  generator.safetensors | generator.json  invert.json  ...
RUN_DIR/drag/    edited.png  w_edited.safetensors  drag.json  preview.png
RUN_DIR/.photodrag-run   the marker (this folder is the tool's own) and the lock file

A process that writes a run folder holds an exclusive `flock` on its marker (`locked_run`), so two
edits never write one folder at once; the kernel drops the lock when the process dies, so a crash
leaves no stale lock.  A folder that is not empty and has no marker is the user's: it is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image

from common.errors import BusyError, UsageError
from common.fileio import disk_full_error, is_disk_full

MARKER = ".photodrag-run"
# replaced whole by their stages (detect and faces/N/...: a several-face edit's)
STAGE_FOLDERS = ("align", "invert", "drag", "composite", "detect", "faces")

STAGE_COMMANDS = {
    "align": "photodrag align PHOTO --out {run}",
    "invert": "photodrag invert {run}",
    "drag": "photodrag drag {run} --drag ...",
}


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def stage(self, name: str) -> Path:
        return self.path / name

    def require(self, stage: str, filename: str) -> Path:
        """Path of a stage file that must exist, else a message saying which command makes it."""
        f = self.stage(stage) / filename
        if not f.is_file():
            how = STAGE_COMMANDS.get(stage, stage).format(run=self.path)
            raise UsageError(f"{f} is missing: run `{how}` first")
        return f

    def read_json(self, stage: str, filename: str) -> dict:
        f = self.require(stage, filename)
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{f} is unreadable ({exc}); re-run the {stage} stage") from None

    def read_image(self, stage: str, filename: str) -> np.ndarray:
        f = self.require(stage, filename)
        try:
            with Image.open(f) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise UsageError(f"{f} is unreadable ({exc}); re-run the {stage} stage") from None

    def file_sha256(self, stage: str, filename: str) -> str:
        return hashlib.sha256(self.require(stage, filename).read_bytes()).hexdigest()


def _holder(marker: Path) -> str:
    """' (pid N)' of the process that last locked the folder, as it wrote in the marker; '' if unknown."""
    try:
        words = marker.read_text().split()
    except OSError:
        return ""
    pid = words[words.index("pid") + 1] if "pid" in words[:-1] else ""
    return f" (pid {pid})" if pid.isdigit() else ""


def check_run_folder(path: Path) -> None:
    """Refuse a path that is not a folder, or a non-empty folder without the marker (the user's own)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"run folder {path} is a file, not a folder")
    if path.is_dir() and not (path / MARKER).exists() and any(path.iterdir()):
        raise UsageError(
            f"{path} is not empty and is not a photodrag run folder (it has no {MARKER} marker): "
            "refusing to write into it; give a new or empty folder"
        )


def claim_run_folder(path: Path) -> Path:
    """Make `path` a run folder (created, marker written) unless it is the user's own (`check_run_folder`);
    the align stage calls it before writing, so every run folder carries the marker."""
    path = Path(path)
    check_run_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path / MARKER, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path / MARKER) from None
        raise UsageError(f"cannot write the run folder {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def locked_run(
    path: Path, *, create: bool = True, wait: bool = True, notify: Callable[[str], None] = lambda msg: None
) -> Iterator[RunFolder]:
    """Hold the run folder `path` for the block: marker written, exclusive lock taken.

    Another process holding it: wait (after `notify` says so), or raise `BusyError` when `wait` is
    False.  `create=False` (commands that read an earlier stage): a missing folder is yielded unlocked,
    so the command reports which stage is missing.  When the block fails before writing anything into
    the folder, the folder is left as it was: made here, it is removed again (a bad photo or a refused
    face choice leaves no run folder); an empty folder of the user's loses the marker written here.
    """
    path = Path(path)
    check_run_folder(path)
    if not create and not path.is_dir():
        yield RunFolder(path)
        return
    created, marked = not path.exists(), not (path / MARKER).exists()
    marker = claim_run_folder(path) / MARKER
    try:
        fd = os.open(marker, os.O_RDWR)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(marker) from None
        raise UsageError(f"cannot write the run folder {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = f"{path} is in use by another photodrag process{_holder(marker)}"
            if not wait:
                raise BusyError(f"{busy}; try again when it has finished, or use another run folder") from None
            notify(f"{busy}; waiting for it to finish (--no-wait fails instead)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"photodrag run folder; locked by pid {os.getpid()}\n".encode())
        yield RunFolder(path)
    except BaseException:
        if marked and os.listdir(path) == [MARKER]:
            with contextlib.suppress(OSError):
                marker.unlink()
                if created:
                    path.rmdir()
        raise
    finally:
        os.close(fd)  # releases the lock


def owned_by_run(run_path: Path, path: Path, output: bool = False) -> Optional[str]:
    """Why `path` is one of the run folder's own files ('the run replaces its drag stage folder', ...),
    else None: an input (photo, recipe, mask) or an `output` must not be in a stage folder (replaced
    whole) or be RUN/recipe.json (rewritten); an output may not be in RUN/input/ either (kept originals)."""
    run_path, path = Path(run_path).resolve(), Path(path).resolve()
    try:
        rel = path.relative_to(run_path)
    except ValueError:
        return None
    first = rel.parts[0] if rel.parts else ""
    if first in STAGE_FOLDERS:
        return f"the run replaces its {first} stage folder"
    if rel.parts == ("recipe.json",):
        return "the run rewrites its recipe.json"
    if output and first == "input":
        return "input/ keeps the original photos"
    if output and rel.parts in ((), (MARKER,)):
        return "it is the run folder's own"
    return None
