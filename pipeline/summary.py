"""What an edit reports: per-stage time or reuse, the face, the drag's distances, identity, warnings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from align.identity import SAME_PERSON
from drag.record import stop_line

STAGES = ("align", "invert", "drag", "composite")


@dataclass
class EditSummary:
    output: Path
    run_dir: Path
    seconds: Dict[str, float] = field(default_factory=dict)
    reused: Dict[str, bool] = field(default_factory=dict)
    cache_hit: Optional[bool] = None
    distances_photo: List[float] = field(default_factory=list)
    stop_reason: Optional[str] = None
    drag_steps: Optional[int] = None
    warnings: List[str] = field(default_factory=list)
    identity: Dict[str, Optional[float]] = field(default_factory=dict)
    profile: str = "full"
    face: Optional[str] = None  # the face's size in the photo
    presets: List[str] = field(default_factory=list)  # requested vs achieved, from DragRecord
    composite: Optional[str] = None  # blend, changed pixels and motion, from CompositeRecord
    faces: Dict[int, "EditSummary"] = field(default_factory=dict)  # several faces: each face's own summary
    skipped: Dict[int, str] = field(default_factory=dict)  # several faces: why a face was not edited

    def lines(self) -> List[str]:
        if self.faces:
            return self._group_lines()
        out = []
        for st in STAGES:
            if st in self.seconds:
                how = "reused" if self.reused.get(st) else f"{self.seconds[st]:.1f} s"
                if st == "invert" and not self.reused.get(st) and self.cache_hit:
                    how += " (cache hit)"
                if st == "invert" and self.profile != "full":
                    how += (
                        f" ({self.profile} profile: fewer steps, a rougher likeness; drop --preview for the final edit)"
                    )
                out.append(f"  {st:10s} {how}")
        if self.face:
            out.insert(0, f"  face       {self.face}")
        if self.distances_photo:
            out.append(
                f"  {stop_line(self.stop_reason, self.drag_steps)}; distance to targets: "
                + ", ".join(f"{d:.1f}" for d in self.distances_photo)
                + " px in the photo"
            )
        if self.presets:
            out.append("  presets, requested vs achieved (landmarks detected again on the edited face):")
            out.extend("  " + line for line in self.presets)
        if self.composite:
            out.append(f"  composite: {self.composite}")
        for what, d in self.identity.items():
            if d is not None:
                out.append(
                    f"  identity distance, {what}: {d:.3f} ({'same person' if d < SAME_PERSON else 'DIFFERENT?'}"
                    f" by dlib's {SAME_PERSON} rule)"
                )
        out.append(f"  run folder: {self.run_dir}")
        out.append(f"  output:     {self.output}")
        return out

    def _group_lines(self) -> List[str]:
        """A several-face edit: each face's lines (indented, under its index), the skipped faces, the composite."""
        out = []
        for n, face in sorted(self.faces.items()):
            lines = face.lines()[:-2]  # without the run folder and output lines: the group's are below
            head = lines.pop(0) if face.face else ""
            out.append(f"  face {n:<5d} {head.strip()[len('face') :].strip()}")
            out.extend("  " + line for line in lines)
            out.append(f"    run folder: {face.run_dir}")
        out.extend(f"  face {n:<5d} skipped: {why}" for n, why in sorted(self.skipped.items()))
        if "composite" in self.seconds:
            out.append(f"  {'composite':10s} {self.seconds['composite']:.1f} s")
        if self.composite:
            out.append(f"  composite: {self.composite}")
        out.append(f"  run folder: {self.run_dir}")
        out.append(f"  output:     {self.output}")
        return out


class StageRunner:
    """fresh? -> reuse : run, for each stage in order; a stage that ran makes every later one run."""

    def __init__(self, summary: EditSummary, from_stage: Optional[str], log: Callable[[str], None]) -> None:
        self.summary, self.log, self.chain = summary, log, True
        self.force = STAGES.index(from_stage) if from_stage else len(STAGES)

    def stage(self, name: str, fresh: Callable[[], bool], run: Callable[[], object]):
        i = STAGES.index(name)
        if self.chain and i < self.force and fresh():
            self.log(f"[{i + 1}/4] {name}: reused")
            self.summary.seconds[name], self.summary.reused[name] = 0.0, True
            return None
        self.chain = False
        self.log(f"[{i + 1}/4] {name}")
        t0 = time.perf_counter()
        value = run()
        self.summary.seconds[name], self.summary.reused[name] = round(time.perf_counter() - t0, 2), False
        return value
