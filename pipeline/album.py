"""Albums: one recipe applied to many photos, locally or on a Ray cluster.

One task per photo runs the same `run_edit` as a single `edit` (`edit_one` is the only place
that calls it).  The driver plans the tasks (a finished photo whose content and recipe are
unchanged is skipped), hands them to an executor (local: one after the other in this process;
ray: one actor per worker that keeps the networks loaded), and records every result in
OUT_DIR/album.json as it arrives, so an interrupted album resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

import pipeline
from common.errors import PhotodragError, UsageError
from common.fileio import sha256_file, sweep_temps, write_json
from common.settings import resolve_device
from inversion.cache import InversionCache
from pipeline.edit import run_edit
from pipeline.models import LoadedModels
from pipeline.outputs import edited_name
from pipeline.recipe import Recipe
from pipeline.summary import EditSummary
from weights.store import WeightStore

ALBUM_FILE = "album.json"
VERSION = 1
INSTALL_HINT = "--cluster ray needs Ray: pip install -e '.[cluster]'"


# what to do ------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoTask:
    """One photo of the album and where its edit goes."""

    photo: Path
    output: Path
    sha256: str


@dataclass(frozen=True)
class EditOptions:
    """What every worker needs besides the recipe (plain values, so they travel to Ray workers)."""

    home: Path
    device: str = "auto"
    jpeg_quality: Optional[int] = None
    from_stage: Optional[str] = None


@dataclass(frozen=True)
class PhotoResult:
    """How one photo went: status is done, skipped or failed (with its one-line reason)."""

    output: str
    photo: str
    status: str
    seconds: float = 0.0
    reason: Optional[str] = None
    identity_distance: Optional[float] = None
    sha256: Optional[str] = None
    recipe_sha256: Optional[str] = None
    face_identity: Optional[Dict[str, Dict[str, Optional[float]]]] = None  # several faces: `photo_identity`


def _rounded(distance: Optional[float]) -> Optional[float]:
    return None if distance is None else round(float(distance), 4)


def photo_identity(summary: EditSummary) -> Tuple[Optional[float], Optional[Dict[str, Dict[str, Optional[float]]]]]:
    """album.json's identity figures of an edited photo: (identity_distance, face_identity).

    One face: its "photo vs edited" distance, and no per-face figures.  Several faces: each edited
    face's identity distances as composite.json lists them (photo vs reconstruction, vs edited, vs
    output photo; by face index), and as the photo's figure the worst (largest) "photo vs edited" of
    its faces, the one-face figure; None when any face's was not measured (the worst is then unknown)."""
    if not summary.faces:
        return _rounded(summary.identity.get("photo vs edited")), None
    faces = {
        str(n): {what: _rounded(d) for what, d in face.identity.items()} for n, face in sorted(summary.faces.items())
    }
    edited = [f.get("photo vs edited") for f in faces.values()]
    return (None if None in edited else max(edited)), faces


def output_path(out_dir: Path, photo: Path) -> Path:
    return Path(out_dir) / edited_name(photo)


def check_album_recipe(recipe: Recipe, n_photos: int) -> None:
    """Refuse photo-pixel or relative points for several photos: they land on a different part of each face.

    Presets are derived from each photo's own landmarks, so a presets-only recipe suits any album.
    """
    if n_photos > 1 and recipe.coords in ("photo", "relative") and not recipe.presets_only:
        raise UsageError(
            f'a recipe with "{recipe.coords}" coordinates cannot be applied to {n_photos} photos '
            '(its points land on a different part of each face); use "coords": "aligned" or presets'
        )


def recipe_sha256(recipe: Recipe, options: EditOptions) -> str:
    """A fingerprint of everything that decides an output besides the photo: recipe, mask file, JPEG quality."""
    data = {"recipe": recipe.to_json(), "jpeg_quality": options.jpeg_quality}
    if recipe.mask_path and Path(recipe.mask_path).is_file():
        data["mask_sha256"] = sha256_file(Path(recipe.mask_path))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def is_finished(entry: Optional[dict], output_exists: bool, photo_sha: str, recipe_sha: str) -> bool:
    """The skip rule: the output is there and album.json says it came from this photo and this recipe."""
    return (
        output_exists
        and entry is not None
        and entry.get("status") in ("done", "skipped")
        and entry.get("sha256") == photo_sha
        and entry.get("recipe_sha256") == recipe_sha
    )


def plan(
    photos: Sequence[Path], out_dir: Path, recipe_sha: str, previous: Dict[str, dict], force: bool = False
) -> Tuple[List[PhotoTask], List[PhotoResult]]:
    """Split the album into tasks to run and results known now (skipped, or failed: unreadable file)."""
    tasks, known = [], []
    for photo in photos:
        out = output_path(out_dir, photo)
        try:
            sha = sha256_file(photo)
        except OSError as exc:
            known.append(
                PhotoResult(out.name, str(photo), "failed", reason=f"cannot read {photo}: {exc.strerror or exc}")
            )
            continue
        entry = previous.get(out.name)
        if not force and is_finished(entry, out.is_file(), sha, recipe_sha):
            known.append(
                PhotoResult(
                    out.name,
                    str(photo),
                    "skipped",
                    identity_distance=entry.get("identity_distance"),
                    face_identity=entry.get("face_identity"),
                    sha256=sha,
                    recipe_sha256=recipe_sha,
                )
            )
        else:
            tasks.append(PhotoTask(Path(photo), out, sha))
    return tasks, known


# album.json ------------------------------------------------------------------
def read_album(out_dir: Path) -> Dict[str, dict]:
    """The photos of an earlier album.json in `out_dir` (by output name); {} when none or unreadable."""
    try:
        data = json.loads((Path(out_dir) / ALBUM_FILE).read_text())
        photos = data.get("photos", {})
        return photos if isinstance(photos, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


class AlbumLog:
    """OUT_DIR/album.json, rewritten atomically after every result."""

    def __init__(self, out_dir: Path, recipe: Recipe, recipe_sha: str, previous: Dict[str, dict]) -> None:
        self.path = Path(out_dir) / ALBUM_FILE
        self.recipe, self.recipe_sha = recipe, recipe_sha
        self.photos: Dict[str, dict] = dict(previous)
        self.started = time.time()

    def record(self, result: PhotoResult) -> None:
        entry = {k: v for k, v in asdict(result).items() if k != "output"}
        if entry["face_identity"] is None:  # a one-face photo's record has no per-face figures
            del entry["face_identity"]
        self.photos[result.output] = entry
        self.write()

    def counts(self, names: Iterable[str]) -> Dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0}
        for name in names:
            status = self.photos.get(name, {}).get("status")
            if status in out:
                out[status] += 1
        return out

    def write(self) -> None:
        write_json(
            self.path,
            {
                "version": VERSION,
                "recipe": self.recipe.to_json(),
                "recipe_sha256": self.recipe_sha,
                "photos": self.photos,
            },
        )


# one photo -------------------------------------------------------------------
def edit_one(task: PhotoTask, recipe: Recipe, options: EditOptions, models=None, store=None, cache=None) -> PhotoResult:
    """Edit one photo exactly like a single `edit`; an input error fails this photo alone.

    A worker passes the same `models`, `store` and `cache` for all its photos, so networks are
    loaded and the model file is hashed once."""
    store = store or _store(options)
    cache = cache or _cache(options)
    t0 = time.perf_counter()
    base = dict(output=task.output.name, photo=str(task.photo), sha256=task.sha256, recipe_sha256=None)
    try:
        summary = run_edit(
            task.photo,
            recipe,
            task.output,
            home=options.home,
            device=resolve_device(options.device),
            store=store,
            cache=cache,
            from_stage=options.from_stage,
            jpeg_quality=options.jpeg_quality,
            progress=False,
            models=models,
        )
    except PhotodragError as exc:
        return PhotoResult(
            **base,
            status="failed",
            seconds=round(time.perf_counter() - t0, 2),
            reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
    distance, faces = photo_identity(summary)
    return PhotoResult(
        **base,
        status="done",
        seconds=round(time.perf_counter() - t0, 2),
        identity_distance=distance,
        face_identity=faces,
    )


# executors -------------------------------------------------------------------
ModelsFactory = Callable[[], object]


def _store(options: EditOptions):
    return WeightStore(options.home, progress=False)


def _cache(options: EditOptions):
    return InversionCache(Path(options.home) / "cache" / "inversion")


def _default_models():
    return LoadedModels()


class LocalExecutor:
    """Today's batch: the photos one after the other in this process, networks loaded once."""

    def __init__(self, models_factory: ModelsFactory = _default_models) -> None:
        self.models_factory = models_factory

    def run(self, tasks: Sequence[PhotoTask], recipe: Recipe, options: EditOptions) -> Iterator[PhotoResult]:
        models, store, cache = self.models_factory(), _store(options), _cache(options)
        for task in tasks:
            yield edit_one(task, recipe, options, models, store, cache)


class _Worker:
    """A Ray actor: loads the networks once and edits the photos it is given."""

    def __init__(self, recipe: Recipe, options: EditOptions, models_factory: ModelsFactory) -> None:
        self.recipe, self.options = recipe, options
        self.models, self.store, self.cache = models_factory(), _store(options), _cache(options)

    def edit(self, task: PhotoTask) -> PhotoResult:
        return edit_one(task, self.recipe, self.options, self.models, self.store, self.cache)

    def where(self) -> dict:
        """Which code and process this worker runs (for checks and tests)."""
        return {"pid": os.getpid(), "pipeline": pipeline.__file__}


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def import_ray():
    """The `ray` module, or a UsageError with the install hint (ray is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


class RayExecutor:
    """One Ray actor per worker (a GPU each when the cluster has GPUs); a dead worker is restarted
    and its photo retried.  Connects to `address` (or $RAY_ADDRESS), else starts a local Ray, unless
    this process is already connected; only a connection it made is shut down."""

    RETRIES = 3

    def __init__(
        self,
        address: Optional[str] = None,
        workers: Optional[int] = None,
        models_factory: ModelsFactory = _default_models,
        init_kwargs: Optional[dict] = None,
    ) -> None:
        self.address, self.workers = address, workers
        self.models_factory = models_factory
        self.init_kwargs = dict(init_kwargs or {})

    def run(self, tasks: Sequence[PhotoTask], recipe: Recipe, options: EditOptions) -> Iterator[PhotoResult]:
        ray = import_ray()
        owns = self._connect(ray)
        actors, pending = [], {}
        try:
            if not tasks:
                return
            actors = self._start_workers(ray, len(tasks), recipe, options)
            queue = iter(tasks)

            def submit(actor) -> None:
                task = next(queue, None)
                if task is not None:
                    pending[actor.edit.remote(task)] = (actor, task)

            for actor in actors:
                submit(actor)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                actor, task = pending.pop(ready[0])
                yield self._result(ray, ready[0], task)
                submit(actor)
        finally:
            for ref in pending:
                ray.cancel(ref)
            for actor in actors:
                ray.kill(actor, no_restart=True)
            if owns:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join `address` (or start a local Ray) unless already connected; True when this call connected."""
        if ray.is_initialized():
            return False
        kwargs = dict(include_dashboard=False, logging_level="warning", log_to_driver=False)
        kwargs.update(self.init_kwargs)
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot reach the Ray cluster {self.address or ''}: {_one_line(exc)}".replace("  ", " ")
            ) from None
        return True

    def _start_workers(self, ray, n_tasks: int, recipe: Recipe, options: EditOptions) -> list:
        """The actors: --workers of them, else one per GPU (or CPU), never more than there are photos."""
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        n = min(self.workers or (gpus or cpus), n_tasks)
        Worker = ray.remote(
            num_cpus=0 if gpus else 1,
            num_gpus=1 if gpus else 0,
            max_restarts=self.RETRIES,
            max_task_retries=self.RETRIES,
        )(_Worker)
        return [Worker.remote(recipe, options, self.models_factory) for _ in range(n)]

    def _result(self, ray, ref, task: PhotoTask) -> PhotoResult:
        """The finished task's result; an edit that raised or a worker that kept dying fails its photo."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the edit raised (not an input error)
            reason = f"internal error: {_one_line(exc)}"
        except ray.exceptions.RayError as exc:  # the worker died every time
            reason = f"the worker died {self.RETRIES + 1} times: {_one_line(exc)}"
        return PhotoResult(task.output.name, str(task.photo), "failed", sha256=task.sha256, reason=reason)


# the album -------------------------------------------------------------------
@dataclass(frozen=True)
class AlbumSummary:
    done: int
    skipped: int
    failed: int
    seconds: float
    album_json: Path

    def line(self) -> str:
        total = self.done + self.skipped + self.failed
        return (
            f"album: {total} photos: {self.done} done, {self.skipped} skipped, {self.failed} failed "
            f"in {self.seconds:.1f} s; {self.album_json}"
        )


def _remove_partial(tasks: Iterable[PhotoTask]) -> None:
    """Delete temp files a killed writer left beside the outputs (finished outputs are renamed in whole)."""
    for task in tasks:
        for tmp in task.output.parent.glob(f".{task.output.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def run_album(
    photos: Sequence[Path],
    recipe: Recipe,
    out_dir: Path,
    options: EditOptions,
    executor,
    progress: bool = True,
    on_result: Callable[[PhotoResult], None] = lambda r: None,
) -> AlbumSummary:
    """Edit every photo into OUT_DIR/<name>_edited.<ext>, skipping finished ones, recording album.json."""
    check_album_recipe(recipe, len(photos))
    names = [output_path(out_dir, p).name for p in photos]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"two photos would both be written as {twice[0]}; rename one or edit them in two albums")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_temps(out_dir, targets=[ALBUM_FILE])  # a killed album's half-written album.json (each edit sweeps its own)
    rsha = recipe_sha256(recipe, options)
    previous = read_album(out_dir)
    tasks, known = plan(photos, out_dir, rsha, previous, force=options.from_stage is not None)
    log = AlbumLog(out_dir, recipe, rsha, previous)
    t0 = time.perf_counter()
    bar = _progress_bar(len(photos), progress)

    def finish(result: PhotoResult) -> None:
        if result.status != "failed":
            result = PhotoResult(**dict(asdict(result), recipe_sha256=rsha))
        log.record(result)
        on_result(result)
        seen.add(result.output)
        c = log.counts(seen)
        bar.set_postfix(done=c["done"] + c["skipped"], failed=c["failed"], left=len(photos) - len(seen))
        bar.update(1)

    seen: set = set()
    try:
        for result in known:
            finish(result)
        if tasks:
            with contextlib.closing(executor.run(tasks, recipe, options)) as results:  # cancels on Ctrl-C
                for result in results:
                    finish(result)
    except BaseException:
        _remove_partial(tasks)
        raise
    finally:
        bar.close()
    c = log.counts(names)
    return AlbumSummary(c["done"], c["skipped"], c["failed"], round(time.perf_counter() - t0, 2), log.path)


def _progress_bar(total: int, enabled: bool):
    return tqdm(total=total, unit="photo", desc="album", disable=not enabled, dynamic_ncols=True)
