"""`photodrag doctor`: check the install, then prove the pipeline end to end on random weights.

The checks tell "my install is broken" from "I still need the weights": torch and its build,
the device, dlib and its landmark model, every registry file (present, missing or unverified,
with the command that fetches it), the home folder, the cache, the web and Ray extras.  The
proof runs align -> invert -> drag -> composite on the packaged photo with a tiny generator of
the real architecture and LPIPS backbones, all random and built in memory: nothing is read
from or written to the weights folder, and the result is noise by design.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import dlib
import numpy as np
import torch

from align.record import AlignRecord
from align.stage import run_align
from common.errors import PhotodragError
from drag.config import DragConfig
from drag.presets import preset_drags
from drag.stage import run_drag
from inversion.cache import InversionCache
from inversion.config import InversionConfig, ProjectionConfig, TuningConfig
from inversion.perceptual import Perceptual
from inversion.stage import run_invert
from pipeline.composite import run_composite
from weights.registry import REGISTRY
from weights.store import WeightStore
from weights.tiny import TINY_NAME, tiny_random_generator

PORTRAIT = Path(__file__).resolve().parent / "data" / "astronaut.jpg"  # public domain (data/README.md)
PROOF_SIZE = 64  # the tiny generator's resolution: the proof takes seconds on a CPU
PROOF_PRESET = {"smile": 1.0}
PROOF_INVERSION = InversionConfig(
    projection=ProjectionConfig(steps=6, w_avg_samples=100),
    tuning=TuningConfig(steps=3, lpips_threshold=0.0),
    profile="doctor",
)
PROOF_DRAG = DragConfig(steps=10)
NOISE_NOTE = (
    "the result is noise: the generator and the LPIPS backbones have random weights. "
    "This proves the install works, not what an edit looks like"
)
EXTRAS = {"web": ("fastapi", "uvicorn", "multipart"), "ray": ("ray",)}
EXTRA_INSTALL = {"web": "pip install -e '.[ui]'", "ray": "pip install -e '.[cluster]'"}


def _row(name: str, status: str, detail: str, fix: str = "") -> dict:
    return {"name": name, "status": status, "detail": detail, "fix": fix}


def torch_rows(device: torch.device) -> List[dict]:
    """torch's version and build (CPU or CUDA), and the device a command would use."""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    rows = [_row("torch", "ok", f"{torch.__version__}, {build} build"), _row("device", "ok", f"{device}{gpu}")]
    if torch.version.cuda and not torch.cuda.is_available():
        rows[1]["detail"] += "; a CUDA build without a usable GPU (the CPU build is about 2 GB smaller)"
    return rows


def dlib_row() -> dict:
    """dlib's version (it is a dependency: align imports it, so a missing dlib fails before this)."""
    return _row("dlib", "ok", str(getattr(dlib, "__version__", "?")))


def fetch_command(entry) -> str:
    """How a user gets a registry file."""
    if entry.package:
        return f"pip install {entry.package.replace('_', '-')}"
    return f"photodrag weights fetch {entry.name}"


def weight_rows(store: WeightStore) -> List[dict]:
    """Every registry file: present / missing / unverified, its size, where it goes, how to fetch it."""
    rows = []
    for name, entry in REGISTRY.items():
        st = store.status(name)
        status = "unverified" if st.present and st.unverified else ("present" if st.present else "missing")
        size = st.path.stat().st_size if st.present else entry.size
        row = _row(name, status, entry.description, "" if st.present else fetch_command(entry))
        row.update(size=size, path=str(st.path), kind=entry.kind)
        rows.append(row)
    return rows


def folder_rows(home: Path) -> List[dict]:
    """The home folder and the inversion cache's size."""
    cache = InversionCache(home / "cache" / "inversion")
    entries = cache.entries() if cache.root.is_dir() else []
    size = sum(e.size for e in entries)
    return [
        _row(
            "home", "ok" if home.is_dir() else "absent", f"{home}" + ("" if home.is_dir() else " (made on first use)")
        ),
        _row("cache", "ok", f"{len(entries)} entries, {size / 2**20:.1f} MiB in {cache.root}"),
    ]


def extra_rows(find: Callable[[str], object] = importlib.util.find_spec) -> List[dict]:
    """The optional extras: the web editor's packages and Ray (found, not imported)."""
    rows = []
    for extra, modules in EXTRAS.items():
        missing = [m for m in modules if find(m) is None]
        status = "missing" if missing else "ok"
        detail = f"missing {', '.join(missing)}" if missing else ", ".join(modules)
        rows.append(_row(f"{extra} extra", status, detail, EXTRA_INSTALL[extra] if missing else ""))
    return rows


def random_perceptual() -> Callable[[str, Optional[int]], Perceptual]:
    """The stages' `perceptual(net, resolution)` with random LPIPS backbones, one per (net, resolution)."""
    built: Dict[tuple, Perceptual] = {}

    def get(net: str, resolution: Optional[int]) -> Perceptual:
        if (net, resolution) not in built:
            built[(net, resolution)] = Perceptual(net, random_backbone=True, resolution=resolution)
        return built[(net, resolution)]

    return get


def prove_pipeline(out_dir: Path, photo: Path = PORTRAIT, progress: bool = False) -> dict:
    """align -> invert -> drag -> composite of `photo` on random weights, in OUT_DIR (on the CPU)."""
    t0 = time.perf_counter()
    run_dir, result = out_dir / "run", out_dir / "edited.jpg"
    run_align(photo, run_dir, size=PROOF_SIZE)
    G = tiny_random_generator(res=PROOF_SIZE)
    run_invert(run_dir, G, TINY_NAME, TINY_NAME, PROOF_INVERSION, random_perceptual(), None, progress=progress)
    align = AlignRecord.load(run_dir)
    handles, targets = preset_drags(align.aligned_landmarks, PROOF_PRESET, align.size)
    state = run_drag(
        run_dir, np.stack([handles, targets], 1), None, PROOF_DRAG, progress=progress, presets=PROOF_PRESET
    )
    run_composite(run_dir, result)
    previews = [run_dir / f for f in ("align/preview.png", "invert/compare.png", "drag/preview.png")]
    previews.append(run_dir / "composite" / "compare.png")
    return {
        "photo": str(photo),
        "folder": str(out_dir),
        "result": str(result),
        "previews": [str(p) for p in previews],
        "drag_steps": int(state.step),
        "seconds": round(time.perf_counter() - t0, 1),
        "note": NOISE_NOTE,
    }


def diagnose(home: Path, device: torch.device, out_dir: Path, progress: bool = False) -> dict:
    """Every check and the end-to-end proof; `ok` is whether the install works (weights may be missing)."""
    rows = torch_rows(device) + [dlib_row()] + weight_rows(WeightStore(home, progress=False))
    rows += folder_rows(home) + extra_rows()
    landmarks = next(r for r in rows if r["name"] == "dlib-landmarks-68")
    ok = all(r["status"] != "error" for r in rows) and landmarks["status"] == "present"
    try:
        proof = prove_pipeline(out_dir, progress=progress) if ok else {"error": "skipped: fix the errors above"}
    except (PhotodragError, OSError, RuntimeError, ValueError) as exc:
        proof, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
    missing = [r["name"] for r in rows if r.get("kind") and r["status"] == "missing"]
    return {"ok": ok and "error" not in proof, "checks": rows, "missing_weights": missing, "proof": proof}


def _size(row: dict) -> str:
    """The file's size, or the registry's "about N MB" where no exact size is published."""
    if row["size"] is not None:
        return f"{row['size'] / 2**20:.0f} MB"
    about = re.search(r"about \d+ MB", row["detail"])
    return about.group(0) if about else "size unknown"


def format_report(report: dict) -> str:
    """The report as a table for people."""
    lines = [f"{'check':<22} {'status':<10} detail"]
    for r in report["checks"]:
        if "kind" in r:
            where = f"{_size(r)}  {r['path']}"
            lines.append(f"{r['name']:<22} {r['status']:<10} {where}" + (f"  ({r['fix']})" if r["fix"] else ""))
        else:
            lines.append(f"{r['name']:<22} {r['status']:<10} {r['detail']}" + (f"  ({r['fix']})" if r["fix"] else ""))
    proof = report["proof"]
    if "error" in proof:
        lines.append(f"{'end to end':<22} {'error':<10} {proof['error']}")
    else:
        lines.append(
            f"{'end to end':<22} {'ok':<10} align -> invert -> drag ({proof['drag_steps']} steps) -> composite "
            f"of {Path(proof['photo']).name} in {proof['seconds']} s on random weights"
        )
        lines += [
            f"  result: {proof['result']}",
            f"  previews: {', '.join(proof['previews'])}",
            f"  note: {NOISE_NOTE}",
        ]
    if report["missing_weights"]:
        lines.append(f"missing weights (the install works without them): {', '.join(report['missing_weights'])}")
    lines.append("the install works" if report["ok"] else "the install has a problem (see the errors above)")
    return "\n".join(lines)
