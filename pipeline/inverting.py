"""The `invert` command on a run folder: the model its aligned face's size asks for, opened once,
then inversion.stage.run_invert with the content cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from align.record import AlignRecord
from inversion.cache import InversionCache
from inversion.config import InversionConfig
from inversion.stage import run_invert
from pipeline.models import LoadedModels, open_models
from weights.store import WeightStore


def invert_run_folder(
    run_dir: Path,
    config: InversionConfig,
    *,
    model: Optional[str],
    store: WeightStore,
    device,
    loaded: LoadedModels,
    cache: Optional[InversionCache],
    store_fp16: bool = False,
    progress: bool = True,
):
    """PTI on RUN_DIR/align/ (the caller holds the run folder and pins the cache); the stage's result.
    Without `model`, the ffhq generator of the aligned face's resolution."""
    size = AlignRecord.load(run_dir).size
    nets = config.perceptual_nets()
    opened = open_models(model or f"ffhq-{size}", store, device, nets, loaded=loaded, landmarks=False)
    return run_invert(
        run_dir,
        opened.generator(),
        opened.chosen.name,
        opened.chosen.sha256,
        config,
        perceptual=opened.perceptual,
        cache=cache,
        store_fp16=store_fp16,
        progress=progress,
    )
