"""The `edit` command's album: the executor its flags choose, every missing file named before any
photo, then pipeline.album.run_album."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence

from common.errors import UsageError
from pipeline.album import (
    AlbumSummary,
    EditOptions,
    LocalExecutor,
    PhotoResult,
    RayExecutor,
    check_album_recipe,
    import_ray,
    run_album,
)
from pipeline.models import LoadedModels, LpipsLoader, check_files
from pipeline.recipe import Recipe
from weights.models import model_for
from weights.store import WeightStore


def choose_executor(cluster: str, address: Optional[str], workers: Optional[int], factory: Callable[[], LoadedModels]):
    """Ray (its install hint before any work) or this process, from --cluster/--address/--workers."""
    if cluster == "ray":
        import_ray()
        return RayExecutor(address=address, workers=workers, models_factory=factory)
    if address or workers:
        raise UsageError("--address and --workers go with --cluster ray")
    return LocalExecutor(factory)


def edit_album(
    photos: Sequence[Path],
    recipe: Recipe,
    out_dir: Path,
    options: EditOptions,
    *,
    store: WeightStore,
    lpips: Optional[LpipsLoader],
    cluster: str = "local",
    address: Optional[str] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    on_result: Callable[[PhotoResult], None] = lambda r: None,
) -> AlbumSummary:
    """Several photos (or --cluster ray) edited into OUT_DIR; a recipe that cannot suit an album, then
    every missing file at once, are said before the first photo."""
    factory = partial(LoadedModels, lpips=lpips)
    executor = choose_executor(cluster, address, workers, factory)
    check_album_recipe(recipe, len(photos))
    nets = recipe.inversion_config().perceptual_nets()
    check_files(model_for(recipe.model, recipe.size), store, nets, factory())
    return run_album(photos, recipe, out_dir, options, executor, progress=progress, on_result=on_result)
