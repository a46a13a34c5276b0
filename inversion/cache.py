"""Content-addressed cache of inversions: pivot + tuned generator, keyed by what produced them.

Key = sha256(aligned pixels, generator checkpoint sha256, inversion config, format version).
An entry is a folder `<root>/<key>/` with `pivot.safetensors`, `generator.safetensors` and
`meta.json` (which holds each file's sha256).  Entries are written into a temp folder and
renamed into place in one step, so readers never see a partial entry and concurrent
writers of the same key cannot corrupt it (the second rename fails and is discarded).
A corrupt or partial entry is reported, removed and recomputed.  The cache is kept
under a size limit by evicting the least recently used entries.

An entry in use is pinned: inside `with cache.pinned():` every entry got or put holds a shared
`flock` on its `.lock` file until the block ends.  Eviction, `remove` and `clear` take an exclusive
lock first, so they skip (or, for `remove`, wait for) an entry another edit is reading; the kernel
drops the locks of a killed process.  An entry is deleted by renaming it to a temp name first, so a
reader never sees half of one.  The LRU touch is best effort (a read-only cache still serves hits).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from common.errors import PhotodragError, UsageError
from common.fileio import check_digests, format_bytes, sha256_file, sweep_temps, temp_dir, tree_size

FORMAT_VERSION = 1
DEFAULT_LIMIT_BYTES = 8 * 2**30
LIMIT_ENV = "PHOTODRAG_CACHE_LIMIT_GB"
ENTRY_FILES = ("pivot.safetensors", "generator.safetensors")
LOCK_FILE = ".lock"  # an entry's pin: shared flock while read, exclusive while removed


def cache_key(aligned: np.ndarray, model_sha256: str, config_json: str) -> str:
    h = hashlib.sha256()
    h.update(f"photodrag-inversion-v{FORMAT_VERSION}\n".encode())
    h.update(f"{aligned.shape}|{aligned.dtype}\n".encode())
    h.update(np.ascontiguousarray(aligned).tobytes())
    h.update(f"\nmodel:{model_sha256}\nconfig:{config_json}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    meta: dict
    size: int
    last_used: float

    @property
    def pivot_path(self) -> Path:
        return self.path / "pivot.safetensors"

    @property
    def generator_path(self) -> Path:
        return self.path / "generator.safetensors"


def check_entry(path: Path) -> Optional[str]:
    """None if the cache entry folder is complete and intact (sizes and hashes of meta.json), else what is wrong."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return "meta.json is missing or unreadable"
    if not isinstance(meta, dict):
        return "meta.json is not an object"
    if meta.get("format_version") != FORMAT_VERSION:
        return f"format version {meta.get('format_version')} (expected {FORMAT_VERSION})"
    sizes, hashes = meta.get("sizes", {}), meta.get("sha256", {})
    digests = {n: {"size": sizes.get(n), "sha256": hashes.get(n)} for n in ENTRY_FILES}
    return check_digests(path, digests)  # the one integrity check, as for a run folder's stage files


def cache_age(meta: Dict, now: Optional[float] = None) -> str:
    """How long ago an entry was made ("made 5 min ago"), from its metadata's `created` time."""
    created = meta.get("created")
    if not isinstance(created, (int, float)):
        return "made ?"
    s = max(0.0, (time.time() if now is None else now) - created)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"made {s / size:.0f} {unit} ago"
    return f"made {s:.0f} s ago"


def _dir_size(path: Path) -> int:
    return tree_size(path)


def _open_lock(entry: Path) -> Optional[int]:
    """A descriptor of the entry's lock file (created when missing and the cache is writable), or None."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(entry / LOCK_FILE, flags, 0o644)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def _exclusive(entry: Path, wait: bool) -> Iterator[bool]:
    """Yield whether the entry could be locked exclusively (nobody reads it); `wait` blocks until then."""
    fd = _open_lock(entry)
    if fd is None:  # vanished, or a read-only cache without lock files: nobody can pin it either
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            ok = True
        except BlockingIOError:
            ok = False
        yield ok
    finally:
        os.close(fd)


class InversionCache:
    def __init__(
        self, root: Path, limit_bytes: Optional[int] = None, warn: Callable[[str], None] = lambda msg: None
    ) -> None:
        self.root = Path(root)
        if limit_bytes is None:
            env = os.environ.get(LIMIT_ENV)
            limit_bytes = int(float(env) * 2**30) if env else DEFAULT_LIMIT_BYTES
        self.limit_bytes = limit_bytes
        self.warn = warn
        self._scopes = threading.local()  # this thread's stack of pinned() blocks: lists of lock fds

    # pinning ------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Entries this thread gets or puts inside the block stay pinned (not evicted or removed by
        anyone) until the block ends."""
        stack = self._scopes.__dict__.setdefault("stack", [])
        fds: List[int] = []
        stack.append(fds)
        try:
            yield
        finally:
            stack.remove(fds)
            for fd in fds:
                os.close(fd)

    def _pin(self, path: Path) -> Optional[int]:
        """Take a shared lock on the entry (waits while it is being removed); None if it cannot be pinned."""
        fd = _open_lock(path)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    def _keep_pin(self, fd: Optional[int]) -> None:
        stack = getattr(self._scopes, "stack", None)
        if fd is None:
            return
        if stack:
            stack[-1].append(fd)
        else:
            os.close(fd)

    def _discard(self, path: Path) -> None:
        """Delete an entry folder: renamed away first, so nobody sees it half deleted."""
        try:
            with temp_dir(self.root, path.name) as tmp:
                os.replace(path, tmp / "entry")
        except (OSError, PhotodragError):  # vanished, or no room for the temp name: delete in place
            shutil.rmtree(path, ignore_errors=True)

    # reading ------------------------------------------------------------
    def _entry(self, path: Path) -> Optional[CacheEntry]:
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return CacheEntry(path.name, path, meta, _dir_size(path), path.stat().st_mtime)

    def entries(self) -> List[CacheEntry]:
        if not self.root.is_dir():
            return []
        out = [
            e
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".")
            for e in [self._entry(p)]
            if e is not None
        ]
        return sorted(out, key=lambda e: -e.last_used)

    def _check(self, path: Path) -> Optional[str]:
        return check_entry(path)

    def get(self, key: str) -> Optional[CacheEntry]:
        """The intact entry for `key` (marked as just used, pinned inside `pinned()`), or None; a damaged
        entry is removed."""
        path = self.root / key
        if not path.is_dir():
            return None
        fd = self._pin(path)
        try:
            problem = self._check(path) if path.is_dir() else "it was removed"
            if problem is not None:
                if path.is_dir():
                    self.warn(f"inversion cache entry {key[:12]} is damaged ({problem}); discarding it and recomputing")
                    if fd is not None:
                        os.close(fd)
                        fd = None
                    with _exclusive(path, wait=False) as free:
                        if free:
                            self._discard(path)
                return None
            with contextlib.suppress(OSError):
                os.utime(path)  # LRU bookkeeping, best effort: a read-only cache still serves hits
            entry = self._entry(path)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._keep_pin(fd)
        return entry

    def find(self, prefix: str) -> CacheEntry:
        matches = [e for e in self.entries() if e.key.startswith(prefix)]
        if not matches:
            raise UsageError(f"no cache entry starts with {prefix!r} (see `photodrag cache ls`)")
        if len(matches) > 1:
            raise UsageError(f"{prefix!r} matches {len(matches)} cache entries; give more characters")
        return matches[0]

    # writing ------------------------------------------------------------
    def put(self, key: str, write: Callable[[Path], Dict], meta: Dict) -> CacheEntry:
        """Create the entry: `write(folder)` writes the entry files into a temp folder."""
        early = None  # our new entry is pinned from the moment it becomes visible
        try:
            with temp_dir(self.root, key) as tmp:
                write(tmp)
                meta = dict(
                    meta,
                    format_version=FORMAT_VERSION,
                    key=key,
                    created=time.time(),
                    sha256={n: sha256_file(tmp / n) for n in ENTRY_FILES},
                    sizes={n: (tmp / n).stat().st_size for n in ENTRY_FILES},
                )
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
                (tmp / LOCK_FILE).touch()
                os.chmod(tmp, 0o755)
                early = self._pin(tmp)
                self._publish(tmp, self.root / key)
            self.evict(keep=key)
            entry = self.get(key)
        finally:
            if early is not None:
                os.close(early)
        if entry is None:
            raise RuntimeError(f"cache entry {key[:12]} could not be written")
        return entry

    def _publish(self, tmp: Path, target: Path) -> None:
        """Rename the finished temp folder into place; a damaged leftover is replaced, an intact entry
        that another writer finished first is kept."""
        if target.exists() and self._check(target) is not None:
            with _exclusive(target, wait=False) as free:
                if free:
                    self._discard(target)
        try:
            os.rename(tmp, target)
        except OSError:
            pass  # another writer finished the same entry first: keep theirs

    # housekeeping -------------------------------------------------------
    def remove(self, key: str, wait: bool = True, notify: Callable[[str], None] = lambda msg: None) -> bool:
        """Delete an entry; one in use by another edit is waited for (after `notify` says so), or kept
        when `wait` is False.  Returns whether it was removed."""
        path = self.root / key
        with _exclusive(path, wait=False) as free:
            if free:
                self._discard(path)
                return True
        if not wait:
            return False
        notify(f"cache entry {key[:12]} is in use by a running edit; waiting for it to finish")
        with _exclusive(path, wait=True):
            self._discard(path)
        return True

    def clear(self) -> Tuple[int, int]:
        """Delete every entry not in use (and leftovers of killed writers): (removed, kept in use)."""
        self.sweep()
        entries = self.entries()
        removed = sum(self.remove(e.key, wait=False) for e in entries)
        return removed, len(entries) - removed

    def total_size(self) -> int:
        return sum(e.size for e in self.entries())

    def disk_usage(self) -> int:
        """Bytes of everything under the cache folder: entries, temp folders being written, anything else."""
        return tree_size(self.root) if self.root.is_dir() else 0

    def sweep(self) -> List[Tuple[Path, int]]:
        """Remove the temp folders of killed writers (owner gone, older than the grace period)."""
        return sweep_temps(self.root)

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Remove least recently used entries until the cache fits its limit; entries in use are skipped
        (one warning says so)."""
        removed, busy = [], []
        entries = self.entries()  # most recent first
        total = sum(e.size for e in entries)
        for e in reversed(entries):
            if total <= self.limit_bytes:
                break
            if e.key == keep:
                continue
            if self.remove(e.key, wait=False):
                total -= e.size
                removed.append(e.key)
            else:
                busy.append(e.key)
        if busy and total > self.limit_bytes:
            self.warn(
                f"the inversion cache is {format_bytes(total - self.limit_bytes)} over its limit: "
                f"{len(busy)} entr{'y is' if len(busy) == 1 else 'ies are'} in use by running edits, kept for now"
            )
        return removed
