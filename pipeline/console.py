"""What the command line shares between commands: the global options (Settings) and the one
warning printer.  Progress and notes go to stderr; stdout carries only the paths written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import click

from common.fileio import sweep_temps, swept_line
from common.run import locked_run
from common.settings import resolve_device
from inversion.cache import InversionCache
from pipeline.models import LoadedModels, LpipsLoader
from weights.download import Opener, open_url
from weights.store import WeightStore


def warn(msg: str) -> None:
    """The one warning line: `photodrag: warning: MSG` on stderr."""
    click.echo(f"photodrag: warning: {msg}", err=True)


def warn_all(warnings: Iterable[str]) -> None:
    """One warning line each."""
    for w in warnings:
        warn(w)


@dataclass(frozen=True)
class Settings:
    device_name: str
    verbose: bool
    quiet: bool
    home: Path
    lpips: Optional[LpipsLoader] = None  # None: LPIPS from the weights store (main's `lpips`)
    opener: Opener = open_url  # how downloads reach the network (main's `opener`)

    @property
    def device(self):
        return resolve_device(self.device_name)

    def store(self):
        return WeightStore(self.home, progress=not self.quiet, opener=self.opener)

    def models(self) -> LoadedModels:
        """A fresh set of loaded networks with this run's LPIPS loader."""
        return LoadedModels(lpips=self.lpips)

    def cache(self):
        return InversionCache(self.home / "cache" / "inversion", warn=warn)

    def info(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)

    def notice(self, msg: str) -> None:
        """A line shown even with --quiet (a wait for another process)."""
        click.echo(f"photodrag: {msg}", err=True)

    @contextlib.contextmanager
    def run_folder(self, run_dir: Path, create: bool = False, output: Optional[Path] = None) -> Iterator[None]:
        """Hold RUN_DIR for a stage command (another process writing it: wait, saying so), after
        sweeping what killed runs left in it (and beside `output`)."""
        with locked_run(run_dir, create=create, notify=self.notice):
            removed = sweep_temps(run_dir)
            if output is not None:
                removed += sweep_temps(output.parent, targets=[output.name])
            if removed:
                self.info(swept_line(removed))
            yield

    def sweep_cache(self, cache: InversionCache) -> None:
        removed = cache.sweep()
        if removed:
            self.info(swept_line(removed, " from the cache"))
