"""Atomic file writing: a temp file in the same folder, fsync, then rename.

A reader never sees a half-written file: either the old one or the complete new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, Optional, Union

from common.errors import UsageError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file for writing; it replaces `path` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            yield fh


def write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: PathLike, obj) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file (same inode when both exist, else the same resolved path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def copy_file(src: PathLike, dst: PathLike) -> None:
    """Copy `src` to `dst` atomically (metadata too)."""
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_digests(folder: PathLike, names: Iterable[str]) -> Dict[str, dict]:
    """{name: {"size", "sha256"}} of files in `folder`: recorded when a stage writes them."""
    folder = Path(folder)
    return {n: {"size": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in names}


def check_digests(folder: PathLike, digests: Optional[Dict[str, dict]]) -> Optional[str]:
    """None when every recorded file is present with its size and hash, else what is wrong."""
    if not isinstance(digests, dict) or not digests:
        return "it records no file hashes (made by an older version)"
    folder = Path(folder)
    for name, d in digests.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if not isinstance(d, dict) or f.stat().st_size != d.get("size"):
            return f"{name} has the wrong size (truncated?)"
        if sha256_file(f) != d.get("sha256"):
            return f"{name} does not match its recorded hash"
    return None


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield an empty temp folder; it replaces the folder `path` only if the block succeeds.

    A stage writes all its files into the temp folder, so an interrupted or failed stage
    leaves the previous complete folder (or none) and never a partial one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class FileHashes:
    """sha256 of files, remembered per (path, size, mtime) by the object that owns this one
    (a WeightStore), so a batch of edits hashes its model once; thread-safe."""

    def __init__(self) -> None:
        self._known: Dict[tuple, str] = {}
        self._lock = threading.Lock()

    def __call__(self, path: PathLike) -> str:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key not in self._known:
                self._known[key] = sha256_file(path)
            return self._known[key]
