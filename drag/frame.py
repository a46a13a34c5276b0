"""The picture a drag works in, whatever the run began from.

A photo's run drags the aligned crop: its points come through align.json's photo -> aligned
matrix, presets use the face's landmarks and the identity check compares with the aligned photo.
A seed run (inversion/seed.py) drags the generated picture itself: its pixels are the
coordinates (identity matrix), presets work only when a face was found in it, and the edit is
compared with the generated picture.  Each fact comes from the record of the stage that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

import numpy as np

from align.record import AlignRecord
from common.errors import UsageError
from common.run import RunFolder
from inversion.record import InversionRecord
from weights.registry import FACES


@dataclass(frozen=True)
class DragFrame:
    """matrix: 3x3 input -> drag pixels and its inverse; size: the square picture's side; photo_size:
    the input's (width, height); landmarks: the face's 68 points in drag pixels, or None;
    seed: the seed run's start (InversionRecord.start), None for a photo's run."""

    matrix: np.ndarray
    inverse: np.ndarray
    size: int
    photo_size: Tuple[int, int]
    landmarks: Optional[np.ndarray]
    reference: Tuple[str, str]  # (stage, file) of the picture the edit is compared with
    seed: Optional[dict] = None
    model: Optional[str] = None

    def check_presets(self, presets: Optional[Mapping[str, float]], run_dir: Path) -> None:
        """Refuse presets, in one line, where there is no face to derive them from."""
        if not presets or self.landmarks is not None:
            return
        if self.seed is None:
            raise UsageError(f"{run_dir}/align/align.json has no landmarks: re-run `photodrag align`")
        subject = self.seed.get("subject")
        if subject and subject != FACES:
            raise UsageError(
                f"presets move a face's landmarks, and {self.model} draws {subject}: drag points with --drag instead"
            )
        raise UsageError(
            f"presets need a face, and none was found in seed {self.seed.get('seed')} of {self.model}: "
            "drag points with --drag instead"
        )

    @property
    def no_face(self) -> Optional[str]:
        """Why an identity check means nothing here (a seed picture with no face in it), else None."""
        if self.seed is None or self.landmarks is not None:
            return None
        subject = self.seed.get("subject")
        if subject and subject != FACES:
            return f"{self.model} draws {subject}, not faces"
        return f"no face was found in seed {self.seed.get('seed')} of {self.model}"


def load_frame(run_dir: Path) -> DragFrame:
    """The frame of RUN_DIR: from invert.json's start for a seed run, else from align.json."""
    run = RunFolder(Path(run_dir))
    if (run.stage("invert") / InversionRecord.FILE).is_file():
        inversion = InversionRecord.load(run.path)
        if inversion.start is not None:
            size = int(inversion.resolution)
            marks = inversion.start.get("landmarks")
            return DragFrame(
                matrix=np.eye(3),
                inverse=np.eye(3),
                size=size,
                photo_size=(size, size),
                landmarks=None if marks is None else np.asarray(marks, dtype=np.float64),
                reference=("invert", "reconstruction.png"),
                seed=inversion.start,
                model=inversion.model_name,
            )
    align = AlignRecord.load(run.path)
    return DragFrame(
        matrix=align.matrix,
        inverse=align.inverse,
        size=align.size,
        photo_size=align.photo_size,
        landmarks=align.aligned_landmarks if align.has_landmarks else None,
        reference=("align", "aligned.png"),
    )
