"""The base of every stage's typed record: one JSON file in the stage's folder, read with clear errors.

Each stage subclasses it beside the code that writes it (align/record.py, inversion/record.py,
drag/record.py, pipeline/composite.py); only that subclass reads the JSON keys, everyone else
uses its typed properties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Tuple, Type, TypeVar, Union

from common.errors import UsageError
from common.fileio import check_digests
from common.run import RunFolder

R = TypeVar("R", bound="StageRecord")
PathLike = Union[str, Path]


@dataclass(frozen=True)
class StageRecord:
    """The parsed JSON of one stage; subclasses name the stage and file and add typed properties."""

    data: Mapping[str, Any]
    STAGE: ClassVar[str] = ""
    FILE: ClassVar[str] = ""
    # (file in the run folder, record key holding its sha256): the upstream file this stage was made from
    UPSTREAM: ClassVar[Optional[Tuple[str, str]]] = None
    # the one line when it was not (`load_fresh`); {stage} is the stage's folder, {run} the run folder
    STALE: ClassVar[str] = "{stage} was made from an older upstream file; re-run the stage"

    @classmethod
    def load(cls: Type[R], run_dir: PathLike) -> R:
        """The record of a finished stage; a one-line UsageError when it is missing or unreadable."""
        run = RunFolder(Path(run_dir))
        data = run.read_json(cls.STAGE, cls.FILE)
        if not isinstance(data, dict):
            raise UsageError(f"{run.stage(cls.STAGE) / cls.FILE} is not a record; re-run the {cls.STAGE} stage")
        return cls(data)

    @classmethod
    def load_fresh(cls: Type[R], run_dir: PathLike) -> R:
        """The record of a finished stage, refused in one line (`STALE`) unless it was made from the
        current upstream file: the one freshness rule, also behind `read_intact`."""
        record = cls.load(run_dir)
        if cls.UPSTREAM is not None:
            run = RunFolder(Path(run_dir))
            stage, name = cls.UPSTREAM[0].split("/")
            if record.data.get(cls.UPSTREAM[1]) != run.file_sha256(stage, name):
                raise UsageError(cls.STALE.format(stage=run.stage(cls.STAGE), run=run.path))
        return record

    @classmethod
    def read_intact(cls: Type[R], run_dir: PathLike) -> Optional[R]:
        """The record when the stage's folder is complete, every file matches its hash and it was made from
        the current upstream file (`UPSTREAM`), else None."""
        folder = Path(run_dir) / cls.STAGE
        try:
            data = json.loads((folder / cls.FILE).read_text())
            if not isinstance(data, dict):
                return None
            cls.load_fresh(run_dir)
        except (OSError, ValueError, UsageError):
            return None
        if check_digests(folder, data.get("files")) is not None:
            return None
        return cls(data)

    def save(self, folder: PathLike) -> None:
        """Write the record into `folder` (the stage's folder being written atomically)."""
        (Path(folder) / self.FILE).write_text(json.dumps(dict(self.data), indent=2) + "\n")
