"""Content-addressed cache of inversions: pivot + tuned generator, keyed by what produced them.

Key = sha256(aligned pixels, generator checkpoint sha256, inversion config, format version).
An entry is a folder `<root>/<key>/` with `pivot.safetensors`, `generator.safetensors` and
`meta.json` (which holds each file's sha256).  Entries are written into a temp folder and
renamed into place in one step, so readers never see a partial entry and concurrent
writers of the same key cannot corrupt it (the second rename fails and is discarded).
A corrupt or partial entry is reported, removed and recomputed.  The cache is kept
under a size limit by evicting the least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from common.errors import UsageError
from common.fileio import sha256_file

FORMAT_VERSION = 1
DEFAULT_LIMIT_BYTES = 8 * 2**30
LIMIT_ENV = "PHOTODRAG_CACHE_LIMIT_GB"
ENTRY_FILES = ("pivot.safetensors", "generator.safetensors")


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
    for name in ENTRY_FILES:
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != meta.get("sizes", {}).get(name):
            return f"{name} has the wrong size (truncated?)"
        if sha256_file(f) != meta.get("sha256", {}).get(name):
            return f"{name} does not match its recorded hash"
    return None


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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
        """The intact entry for `key` (marked as just used), or None; a damaged entry is removed."""
        path = self.root / key
        if not path.is_dir():
            return None
        problem = self._check(path)
        if problem is not None:
            self.warn(f"inversion cache entry {key[:12]} is damaged ({problem}); discarding it and recomputing")
            shutil.rmtree(path, ignore_errors=True)
            return None
        os.utime(path)  # LRU bookkeeping
        return self._entry(path)

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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=self.root))
        try:
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
            os.chmod(tmp, 0o755)
            target = self.root / key
            if target.exists() and self._check(target) is not None:
                shutil.rmtree(target, ignore_errors=True)  # a damaged leftover
            try:
                os.rename(tmp, target)
            except OSError:
                pass  # another writer finished the same entry first: keep theirs
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.evict(keep=key)
        entry = self.get(key)
        if entry is None:
            raise RuntimeError(f"cache entry {key[:12]} could not be written")
        return entry

    # housekeeping -------------------------------------------------------
    def remove(self, key: str) -> None:
        shutil.rmtree(self.root / key, ignore_errors=True)

    def clear(self) -> int:
        entries = self.entries()
        for e in entries:
            self.remove(e.key)
        return len(entries)

    def total_size(self) -> int:
        return sum(e.size for e in self.entries())

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Remove least recently used entries until the cache fits its limit."""
        removed = []
        entries = self.entries()  # most recent first
        total = sum(e.size for e in entries)
        for e in reversed(entries):
            if total <= self.limit_bytes:
                break
            if e.key == keep:
                continue
            self.remove(e.key)
            total -= e.size
            removed.append(e.key)
        return removed
