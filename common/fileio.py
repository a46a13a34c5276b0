"""Atomic file writing: a temp file in the same folder, fsync, then rename; and sweeping what killed writers left.

A reader never sees a half-written file: either the old one or the complete new one.  Every temp
name carries its writer's PID (`.NAME.PID-XXXXXXXX.tmp`, and `.NAME.old-PID` for a folder moved
aside), so `sweep_temps` can tell an orphan (owner gone, older than a grace period) from a live write.
A write that fails because the disk is full is a `DiskFullError` naming the path and the free space.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from common.errors import DiskFullError, PhotodragError, UsageError

PathLike = Union[str, os.PathLike]

SWEEP_GRACE_S = 600.0  # a temp younger than this is never swept, whoever owns it (another host, a slow write)
LEGACY_GRACE_S = 86400.0  # temp names without a PID (older versions): swept after a day
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)-[a-z0-9_]+\.tmp|old-(?P<old>\d+))$")
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def free_space(path: PathLike) -> Optional[int]:
    """Free bytes on the disk holding `path` (or its nearest existing parent); None when unknown."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk or quota is full; libraries word it differently."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS):
            return True
        if any(t in str(exc) for t in _DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: PathLike) -> DiskFullError:
    free = free_space(path)
    there = "unknown free space" if free is None else f"{format_bytes(free)} free there"
    return DiskFullError(f"no space left on device writing {path} ({there}); free some space and run again")


def _write_error(path: Path, exc: OSError) -> Exception:
    if is_disk_full(exc):
        return disk_full_error(path)
    return UsageError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def disk_full_as_error(path: PathLike) -> Iterator[None]:
    """Turn a disk-full failure inside the block (any library's wording, or a full disk) into a
    `DiskFullError` naming `path`; other errors pass unchanged."""
    try:
        yield
    except DiskFullError:  # from a write nested inside this one: name the outer path, the one the user knows
        raise disk_full_error(path) from None
    except PhotodragError:
        raise
    except Exception as exc:
        free = free_space(path)
        if is_disk_full(exc) or (free is not None and free < 64 * 1024):
            raise disk_full_error(path) from None
        raise


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_full_as_error(path):
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
def temp_dir(parent: PathLike, name: str) -> Iterator[Path]:
    """Yield a new empty folder `PARENT/.NAME.PID-XXXXXXXX.tmp`, removed when the block ends (whatever
    the block did not move away); a full disk inside the block is a `DiskFullError` naming PARENT/NAME."""
    target = Path(parent) / name
    try:
        Path(parent).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(name), suffix=".tmp", dir=parent))
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        with disk_full_as_error(target):
            yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_aside(path: Path) -> Optional[Path]:
    """Rename the folder `path` to `.NAME.old-PID` (to be deleted once its replacement is in place)."""
    if not path.exists():
        return None
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if old.exists():  # left by an earlier process that had our PID
        shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    return old


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield an empty temp folder; it replaces the folder `path` only if the block succeeds.

    A stage writes all its files into the temp folder, so an interrupted or failed stage
    leaves the previous complete folder (or none) and never a partial one.
    """
    path = Path(path)
    with temp_dir(path.parent, path.name) as tmp:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = _move_aside(path)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None and not path.exists():
                os.replace(old, path)  # put the previous complete folder back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# sweeping ----------------------------------------------------------------------------------
def temp_owner(name: str) -> Optional[Tuple[str, Optional[int]]]:
    """(the name it stands in for, its writer's PID or None for an older PID-less name) when `name`
    is one of our temp names, else None."""
    m = _TEMP_NAME.match(name)
    if m:
        return m["target"], int(m["pid"] or m["old"])
    m = _LEGACY_TEMP_NAME.match(name)
    return (m["target"], None) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine (ours counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def tree_size(path: PathLike) -> int:
    """Bytes of a file, or of every file under a folder (links not followed); 0 for what vanished."""
    path = Path(path)
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return 0


def _newest_mtime(path: Path) -> float:
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [p.lstat().st_mtime for p in path.rglob("*")]
    return max(times)


def swept_line(removed: List[Tuple[Path, int]], where: str = "") -> Optional[str]:
    """One line saying what a sweep removed, or None when it removed nothing."""
    if not removed:
        return None
    total = format_bytes(sum(n for _, n in removed))
    return f"removed {len(removed)} leftover temp files of killed runs{where} ({total})"


def sweep_temps(
    folder: PathLike, targets: Optional[Iterable[str]] = None, grace_s: float = SWEEP_GRACE_S
) -> List[Tuple[Path, int]]:
    """Remove the temp files and folders that killed writers left in `folder`: our temp names (for
    `targets` only, when given) whose owner PID is gone and which are older than `grace_s`.

    Best effort: what cannot be removed (read-only disk, vanished) is left.  Returns (path, bytes) removed.
    """
    folder = Path(folder)
    wanted = None if targets is None else set(targets)
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    now, removed = time.time(), []
    for p in children:
        owner = temp_owner(p.name)
        if owner is None or (wanted is not None and owner[0] not in wanted):
            continue
        target, pid = owner
        if pid is not None and pid_alive(pid):
            continue
        try:
            if now - _newest_mtime(p) < (grace_s if pid is not None else max(grace_s, LEGACY_GRACE_S)):
                continue
            size = tree_size(p)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append((p, size))
    return removed


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
