"""Networks kept loaded between photos, so a batch or an album worker loads each one once.

`run_edit` takes the generator and the perceptual (LPIPS) nets
from here (a fresh one per edit unless the caller passes one to keep between photos).  The generator is only read by the
stages (inversion and drag work on copies), so one loaded copy serves every photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import inversion.perceptual as perceptual_nets
from weights.checkpoint import load_generator


class LoadedModels:
    """The generator per (model file, device) and the LPIPS nets per (net, resolution, device)."""

    def __init__(self) -> None:
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
            self._perceptual[key] = self.load_perceptual(net, store, resolution).to(device)
        return self._perceptual[key]

    def load_perceptual(self, net: str, store, resolution: Optional[int]):
        """Load one LPIPS net from the weights store (tests override this with a random backbone)."""
        return perceptual_nets.load_perceptual(net, store, resolution)
