"""The lines the stage commands print after their work: pure functions of the stage results,
so the command line only prints them (notes to stderr, unless --quiet)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Iterable, List

from drag.presets import PRESETS
from drag.record import stop_line
from inversion.cache import cache_age
from weights.registry import LAYOUTS, REGISTRY


def face_lines(faces: Iterable) -> List[str]:
    """`align --list-faces`: index, box, size and detector score of each face found."""
    out = []
    for i, f in enumerate(faces):
        l, t, r, b = (round(v) for v in f.box)
        out.append(f"face {i}: box ({l}, {t}, {r}, {b}) size {r - l}x{b - t} score {f.score:.2f}")
    return out


def align_line(res) -> str:
    """The chosen face and the aligned size."""
    l, t, r, b = (round(v) for v in res.face.box)
    return f"face {res.face_index} of {len(res.faces)}: box ({l}, {t}, {r}, {b}) -> {res.size}x{res.size}"


def invert_lines(res, config) -> List[str]:
    """The profile (when not full), a cache hit, LPIPS/MSE before and after tuning, the identity distance."""
    m, out = res.metrics, []
    if config.profile != "full":
        out.append(
            f"{config.profile} profile: {config.projection.steps} projection steps, up to "
            f"{config.tuning.steps} tuning steps (drop --preview for the full PTI schedule)"
        )
    if res.cache_hit:
        out.append(f"cache hit {res.cache_key[:12]}: projection and tuning skipped")
    out.append(
        f"projection LPIPS {m['projection']['lpips']:.4f} MSE {m['projection']['mse']:.5f} -> "
        f"PTI LPIPS {m['tuning']['lpips']:.4f} MSE {m['tuning']['mse']:.5f}"
    )
    if res.identity and res.identity.get("distance") is not None:
        out.append(
            f"identity distance photo vs reconstruction: {res.identity['distance']:.3f} "
            f"(below {res.identity['threshold']} = same person)"
        )
    return out


def drag_lines(record, state) -> List[str]:
    """The presets' table and why the drag stopped, with each point's distance to its target."""
    return [
        *record.preset_table(),
        f"{stop_line(state.reason, state.step)}; distance to target: "
        + ", ".join(f"{d:.1f}" for d in state.distances)
        + " px (aligned)",
    ]


def weights_lines(store) -> List[str]:
    """`weights list`: the folder, then every registry entry, whether it is here, and where it comes from."""
    out = [f"weights folder: {store.dir}"]
    for name in REGISTRY:
        st = store.status(name)
        state = "UNVERIFIED" if st.present and st.unverified else "present" if st.present else "missing"
        out.append(f"{name:22s} {state:10s} {st.entry.kind:15s} {_entry_size(st):>8s}  {st.entry.description}")
        if st.entry.layout:
            out.append(f"{'':22s} layout: {st.entry.layout} ({LAYOUTS[st.entry.layout]}); draws {st.entry.subject}")
        if st.entry.note:
            out.append(f"{'':22s} note: {st.entry.note}")
        out.append(f"{'':22s} file: {st.path}")
        out.append(f"{'':22s} from: {st.entry.url or f'pip package {st.entry.package}'}")
        out.append(f"{'':22s} licence: {st.entry.licence}; sha256: {_entry_sha(st)}")
    return out


def _entry_size(st) -> str:
    """The published size, else the one recorded on first download, else the expected one."""
    size = st.entry.size or st.recorded_size
    if size:
        return f"{size / 2**20:.0f} MiB"
    return f"~{st.entry.approx_mb} MB" if st.entry.approx_mb else "?"


def _entry_sha(st) -> str:
    """The published sha256, else the one recorded on first download (trust on first use)."""
    if st.entry.sha256:
        return st.entry.sha256
    if st.sha256:
        return f"{st.sha256} (not published: recorded on first {st.source}, checked on every later one)"
    return "not published: recorded on first download, checked on every later one"


def preset_lines() -> List[str]:
    """`photodrag presets`: one line per preset."""
    out = []
    for p in PRESETS.values():
        marks = ",".join(map(str, p.landmarks))
        out.append(
            f"{p.name:11s} {p.description}; landmarks {marks}; "
            f"up to {p.unit:.2f} IOD per unit amount, {p.amount_range[0]:g}..{p.amount_range[1]:g}"
        )
    return out


def mib(n: int) -> str:
    """A size in MiB, one decimal."""
    return f"{n / 2**20:.1f} MiB"


def cache_lines(c) -> List[str]:
    """`cache ls`: each entry (most recently used first), then the totals."""
    out = []
    for e in c.entries():
        used = datetime.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        lp = e.meta.get("metrics", {}).get("tuning", {}).get("lpips", "?")
        who = f"{e.meta.get('photo', '?')}  {Path(str(e.meta.get('model', '?'))).name}  {cache_age(e.meta)}"
        out.append(f"{e.key[:16]}  {mib(e.size):>10s}  {who}  used {used}  LPIPS {lp}")
    out.append(f"{len(c.entries())} entries, {mib(c.total_size())} (limit {mib(c.limit_bytes)}) in {c.root}")
    return out


def cache_du_line(c) -> str:
    """`cache du`: everything under the cache folder, the entries' share, and the limit."""
    total, entries = c.disk_usage(), c.entries()
    other = total - sum(e.size for e in entries)
    rest = f" + {mib(other)} of other files (writes in progress)" if other else ""
    return (
        f"{mib(total)}: {len(entries)} entries{rest}; limit {mib(c.limit_bytes)} "
        f"(set PHOTODRAG_CACHE_LIMIT_GB); {c.root}"
    )
