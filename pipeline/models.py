"""The one opener of the networks, and the networks kept loaded between photos.

`open_models` is what every front end calls (`invert`, `edit`, `serve`, album workers, web
sessions): it resolves every file the run needs first (generator, the LPIPS backbones of the
chosen profile, the landmark model), so a user learns everything missing in one message before
any stage runs, then names the chosen generator in a frozen `ChosenModel`.

`LoadedModels` keeps the generator per (file, device) and the LPIPS nets per (net, resolution,
device), so a batch or an album worker loads each once.  The generator is only read by the stages
(inversion and drag work on copies), so one loaded copy serves every photo.  The LPIPS loader is a
parameter: tests and `doctor`-like callers pass one (random backbones) instead of the store's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import inversion.perceptual as perceptual_nets
from weights.checkpoint import load_generator
from weights.models import ChosenModel, resolve_model_path
from weights.registry import LANDMARKS, REGISTRY
from weights.store import WeightStore

# (net, store, resolution) -> a Perceptual on the CPU
LpipsLoader = Callable[[str, WeightStore, Optional[int]], object]
Nets = Iterable[Tuple[str, Optional[int]]]


class LoadedModels:
    """The generator per (model file, device) and the LPIPS nets per (net, resolution, device).

    `lpips` builds one LPIPS net; None means the store's (`inversion.perceptual.load_perceptual`),
    whose backbone files `open_models` then checks up front."""

    def __init__(self, lpips: Optional[LpipsLoader] = None) -> None:
        self.lpips = lpips
        self._generators: Dict[Tuple[str, str], object] = {}
        self._perceptual: Dict[Tuple[str, Optional[int], str], object] = {}

    def generator(self, model_path: Path, device):
        key = (str(Path(model_path).resolve()), str(device))
        if key not in self._generators:
            self._generators[key] = load_generator(model_path, device)
        return self._generators[key]

    def perceptual(self, net: str, store, resolution: Optional[int], device):
        key = (net, resolution, str(device))
        if key not in self._perceptual:
            load = self.lpips or perceptual_nets.load_perceptual
            self._perceptual[key] = load(net, store, resolution).to(device)
        return self._perceptual[key]

    def files(self, model: str, nets: Nets, landmarks: bool = True) -> List[str]:
        """The registry files a run of `model` with LPIPS `nets` needs from the store."""
        names = [model] if model in REGISTRY else []
        if self.lpips is None:
            names += [perceptual_nets.BACKBONES[net] for net, _ in nets]
        return list(dict.fromkeys(names + ([LANDMARKS] if landmarks else [])))


@dataclass(frozen=True)
class OpenModels:
    """The chosen generator and the networks of one run, bound to its store and device."""

    chosen: ChosenModel
    loaded: LoadedModels
    store: WeightStore
    device: object

    def generator(self):
        """The generator, loaded on first use and then kept."""
        return self.loaded.generator(self.chosen.path, self.device)

    def perceptual(self, net: str, resolution: Optional[int]):
        """One LPIPS net on the run's device, built on first use and then kept."""
        return self.loaded.perceptual(net, self.store, resolution, self.device)


def check_files(
    model: str, store: WeightStore, nets: Nets, loaded: LoadedModels, *, landmarks: bool = True, fetch: bool = True
) -> None:
    """Refuse a bad `model` value, then fetch or find every file the run needs: one
    MissingWeightsError naming all that are missing (an album checks once, before its photos)."""
    if model not in REGISTRY:
        resolve_model_path(model, store, fetch=False)
    store.resolve(loaded.files(model, list(nets), landmarks), fetch=fetch)


def open_models(
    model: str,
    store: WeightStore,
    device,
    nets: Nets = (),
    *,
    loaded: Optional[LoadedModels] = None,
    landmarks: bool = True,
    fetch: bool = True,
) -> OpenModels:
    """Check every file first (one message for all that are missing), then choose the generator.

    `model` is a registry name or a checkpoint file; `nets` the (net, resolution) LPIPS nets the
    run's inversion config asks for; `landmarks` whether align will run (dlib's predictor)."""
    loaded = loaded or LoadedModels()
    check_files(model, store, nets, loaded, landmarks=landmarks, fetch=fetch)
    path = resolve_model_path(model, store, fetch=fetch)
    sha = store.hashes(path)
    resolution = REGISTRY[model].resolution if model in REGISTRY else loaded.generator(path, device).img_resolution
    return OpenModels(ChosenModel(model, Path(path), sha, resolution), loaded, store, device)
