"""The local weights folder: which registry files are here, fetch, import, verify.

Layout: `<home>/weights/<filename>` plus `manifest.json`, which records for each name
the sha256 of the file as it was verified or imported, whether that hash matched a
published one, and where it came from.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

import dlib
import torch
import torchvision

from common.errors import CheckpointError, DownloadError, MissingWeightsError, UsageError
from common.fileio import FileHashes, atomic_open, sha256_file, write_json
from weights.checkpoint import check_state_dict, read_checkpoint
from weights.download import Opener, download, open_url, part_path
from weights.networks import Generator
from weights.registry import BACKBONE, DLIB, GENERATOR, REGISTRY, WeightEntry, get_entry


@dataclass(frozen=True)
class WeightStatus:
    entry: WeightEntry
    path: Path
    present: bool
    sha256: Optional[str]  # as recorded in the manifest (or published, for package files)
    unverified: bool  # imported with --allow-unverified despite a hash mismatch
    source: str  # download | import | package | -
    recorded_size: Optional[int] = None  # as recorded in the manifest (trust on first use)


def package_file(entry: WeightEntry) -> Optional[Path]:
    """Locate a file shipped inside a pip package without importing the package."""
    spec = importlib.util.find_spec(entry.package) if entry.package else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / entry.package_path


class WeightStore:
    def __init__(self, home: Path, progress: bool = True, opener: Opener = open_url) -> None:
        self.dir = Path(home) / "weights"
        self.progress = progress
        self.opener = opener  # how downloads reach the network
        self.hashes = FileHashes()  # sha256 of the checkpoints this store resolved, remembered

    # manifest -----------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def _manifest(self) -> Dict[str, dict]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"{self.manifest_path} is unreadable ({exc}); delete it and run `weights verify`"
            ) from None

    def _record(self, name: str, **info) -> None:
        manifest = self._manifest()
        manifest[name] = info
        write_json(self.manifest_path, manifest)

    # queries ------------------------------------------------------------
    def path(self, name: str) -> Path:
        entry = get_entry(name)
        rec = self._manifest().get(name)
        if rec is None and entry.package:
            found = package_file(entry)
            if found is not None:
                return found
        return self.dir / entry.filename

    def status(self, name: str) -> WeightStatus:
        entry = get_entry(name)
        path = self.path(name)
        rec = self._manifest().get(name, {})
        present = path.is_file()
        source = rec.get("source") or ("package" if entry.package and present else "-")
        sha = rec.get("sha256") or (entry.sha256 if source == "package" else None)
        return WeightStatus(entry, path, present, sha, bool(rec.get("unverified")), source, rec.get("size"))

    def missing_message(self, entry: WeightEntry, reason: str = "") -> str:
        where = self.dir / entry.filename
        if entry.package:
            how = f"install it with `pip install {entry.package.replace('_', '-')}`"
        else:
            how = (
                f"run `photodrag weights fetch {entry.name}` (downloads {entry.url}), or put the file at "
                f"{where} and run `photodrag weights import {entry.name} {where}`"
            )
        return f"missing weights {entry.name} ({entry.filename}){': ' + reason if reason else ''}; {how}"

    def require(self, name: str, fetch: bool = True) -> Path:
        """The path of `name`, downloading it first if needed; a clear error if that fails.
        A file found at its registry path that was never imported is first checked (`adopt`)."""
        st = self.status(name)
        if st.present:
            return self.adopt(name) if st.source == "-" else st.path
        if not fetch or not st.entry.url:
            raise MissingWeightsError(self.missing_message(st.entry))
        try:
            return self.fetch(name)
        except DownloadError as exc:
            raise MissingWeightsError(self.missing_message(st.entry, str(exc))) from None

    def resolve(self, names: Iterable[str], fetch: bool = True) -> Dict[str, Path]:
        """The path of every file in `names` (fetching the missing ones), or one MissingWeightsError
        naming all the files that could not be had: a run learns everything it lacks before it starts."""
        paths: Dict[str, Path] = {}
        missing: List[Tuple[WeightEntry, str]] = []
        for name in dict.fromkeys(names):
            st = self.status(name)
            if st.present:
                paths[name] = self.adopt(name) if st.source == "-" else st.path
            elif not fetch or not st.entry.url:
                missing.append((st.entry, ""))
            else:
                try:
                    paths[name] = self.fetch(name)
                except DownloadError as exc:
                    missing.append((st.entry, str(exc).replace(st.entry.url, _host(st.entry.url))))
        if missing:
            raise MissingWeightsError(missing_files_message(missing, self.dir))
        return paths

    def adopt(self, name: str) -> Path:
        """A file someone put at `name`'s registry path without `weights import`: checked and recorded
        exactly as `weights import` would (a wrong file gets import's diagnosis, not a stage's)."""
        path = self.dir / get_entry(name).filename
        try:
            return self.import_file(name, path)
        except CheckpointError as exc:
            raise CheckpointError(f"{path} was put there without `photodrag weights import`, and {exc}") from None

    # actions ------------------------------------------------------------
    def fetch(self, name: str, url: Optional[str] = None) -> Path:
        """Download `name` (resuming), check it, and record its hash."""
        entry = get_entry(name)
        if entry.package:
            path = self.path(name)
            if not path.is_file():
                raise MissingWeightsError(self.missing_message(entry))
            return path
        dest = self.dir / entry.filename
        size, sha = self.expected(name)
        digest = download(url or entry.url, dest, size, sha, progress=self.progress, opener=self.opener)
        try:
            check_content(entry, dest)
        except CheckpointError:
            dest.unlink()
            raise
        self._record(
            name,
            file=entry.filename,
            sha256=digest,
            size=dest.stat().st_size,
            source="download",
            unverified=False,
            url=url or entry.url,
            first_use=entry.sha256 is None and sha is None,
        )
        return dest

    def expected(self, name: str) -> Tuple[Optional[int], Optional[str]]:
        """The size and sha256 a download of `name` must have: the published ones, else those recorded
        when the file was first downloaded or imported (trust on first use), else (None, None)."""
        entry = get_entry(name)
        rec = self._manifest().get(name, {})
        if rec.get("unverified"):
            rec = {}  # a file imported despite a mismatch is no reference for a download
        return entry.size or rec.get("size"), entry.sha256 or rec.get("sha256")

    def import_file(self, name: str, src: Path, allow_unverified: bool = False) -> Path:
        """Copy a file the user already has into the store after checking that it fits `name`."""
        entry = get_entry(name)
        src = Path(src)
        if not src.is_file():
            raise UsageError(f"file not found: {src}")
        check_content(entry, src)
        digest = sha256_file(src)
        mismatch = entry.sha256 is not None and digest != entry.sha256
        if mismatch and not allow_unverified:
            raise CheckpointError(
                f"{src} has sha256 {digest}, not the published {entry.sha256} of {name}; "
                "pass --allow-unverified to use it anyway (it will be marked unverified)"
            )
        dest = self.dir / entry.filename
        if src.resolve() != dest.resolve():
            with open(src, "rb") as fin, atomic_open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        part = part_path(dest)
        if part.exists():
            part.unlink()
        self._record(
            name,
            file=entry.filename,
            sha256=digest,
            size=dest.stat().st_size,
            source="import",
            imported_from=str(src),
            unverified=mismatch,
        )
        return dest

    def verify(self, names: Optional[List[str]] = None) -> Dict[str, str]:
        """Re-hash present files ('ok', 'missing', 'hash mismatch', 'ok (no reference hash)'); generators
        whose hash is fine are also read and checked against their entry ('does not fit: ...')."""
        out = {}
        for name in names or list(REGISTRY):
            st = self.status(name)
            if not st.present:
                out[name] = "missing"
                continue
            digest = sha256_file(st.path)
            expected = st.sha256 or st.entry.sha256
            if expected is None:
                out[name] = "ok (no reference hash)"
            elif digest == expected:
                out[name] = "ok" + (" (unverified import)" if st.unverified else "")
            else:
                out[name] = f"hash mismatch: {digest[:12]}... expected {expected[:12]}..."
                continue
            if st.entry.kind == GENERATOR:
                try:
                    check_content(st.entry, st.path)
                except CheckpointError as exc:
                    out[name] = f"does not fit: {exc}"
        return out


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _size(entry: WeightEntry) -> str:
    """The published size, else the expected one, else 'size unknown'."""
    if entry.size:
        return f"{entry.size / 2**20:.0f} MiB"
    return f"about {entry.approx_mb} MB" if entry.approx_mb else "size unknown"


def missing_files_message(missing: List[Tuple[WeightEntry, str]], folder: Path) -> str:
    """Every missing file on one line each (name, file, size), then why and each remedy once."""
    lines = [f"missing weights: {len(missing)} file{'s' * (len(missing) > 1)} this run needs"]
    name_w = max(len(e.name) for e, _ in missing)
    file_w = max(len(e.filename) for e, _ in missing)
    lines += [f"  {e.name:{name_w}s}  {e.filename:{file_w}s}  {_size(e):>12s}" for e, _ in missing]
    why = _reasons([r for _, r in missing if r])
    if why:
        lines.append(f"download failed: {why}")
    fetchable = [e.name for e, _ in missing if not e.package]
    packages = sorted({e.package.replace("_", "-") for e, _ in missing if e.package})
    if fetchable:
        lines.append(f"fetch: photodrag weights fetch {' '.join(fetchable)}")
        lines.append(f"or, with the files at hand: photodrag weights import NAME FILE (they go to {folder})")
    if packages:
        lines.append(f"install: pip install {' '.join(packages)}")
    return "\n".join(lines)


def _reasons(reasons: List[str]) -> str:
    """Download failures, each said once: 'cannot reach A, B (why)' for hosts failing the same way."""
    hosts: Dict[str, List[str]] = {}
    others: List[str] = []
    for r in reasons:
        m = re.fullmatch(r"cannot reach (\S+) \((.*)\)", r)
        if m:
            hosts.setdefault(m.group(2), []).append(m.group(1))
        elif r not in others:
            others.append(r)
    reached = [f"cannot reach {', '.join(dict.fromkeys(h))} ({why})" for why, h in hosts.items()]
    return "; ".join(reached + others)


def generator_mismatch(entry: WeightEntry, config) -> Optional[str]:
    """What differs between a generator's own config and what registry entry `entry` needs, or None.

    A file is judged by its own kwargs: resolution, W size and RGB output must match the
    entry; the channel layout (channel_base, fp16 layers, clamp) may differ.
    """
    want = entry.init_kwargs or {}
    checks = (
        ("resolution", config.img_resolution, want.get("img_resolution")),
        ("w_dim", config.w_dim, want.get("w_dim")),
        ("img_channels", config.img_channels, want.get("img_channels", 3)),
    )
    differs = [f"{name} {have} (needs {need})" for name, have, need in checks if need is not None and have != need]
    return ", ".join(differs) or None


def check_content(entry: WeightEntry, path: Path) -> None:
    """Read `path` (safely) and check that it is the kind of file `entry` names."""
    if entry.kind == GENERATOR:
        config, sd = read_checkpoint(path).require()
        differs = generator_mismatch(entry, config)
        if differs:
            raise CheckpointError(
                f"{path} is a {config.img_resolution}px generator with w_dim {config.w_dim}; "
                f"{entry.name} needs {entry.resolution}px with w_dim "
                f"{entry.init_kwargs['w_dim']} (differs: {differs})"
            )
        check_state_dict(Generator.from_config(config), sd)  # its tensors fit its own kwargs
    elif entry.kind == BACKBONE:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a plain PyTorch state dict ({str(exc).splitlines()[0]})") from None
        expected = _backbone_shapes(entry.name)
        if not isinstance(sd, dict) or {k: tuple(v.shape) for k, v in sd.items()} != expected:
            arch = "alexnet" if entry.name == "lpips-alex" else "vgg16"
            raise CheckpointError(f"{path} is not a torchvision {arch} state dict")
    elif entry.kind == DLIB:
        try:
            (dlib.shape_predictor if "landmarks" in entry.name else dlib.face_recognition_model_v1)(str(path))
        except RuntimeError as exc:
            raise CheckpointError(f"{path} is not a dlib model of the right kind ({exc})") from None


def _backbone_shapes(name: str) -> Dict[str, tuple]:
    net = torchvision.models.alexnet() if name == "lpips-alex" else torchvision.models.vgg16()
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}
