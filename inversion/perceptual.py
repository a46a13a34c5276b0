"""LPIPS through the `lpips` package, with the backbone weights from the local registry file.

The package would download torchvision weights at run time; instead the trunk is built
without weights and filled from the registry's verified file.  A missing file is a clear
error (fetched first on demand), never a silently random network.  Tests may ask for a
random backbone explicitly with `random_backbone=True`.
"""

from __future__ import annotations

import re
import warnings
from typing import List, Optional, Sequence

import lpips
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.errors import CheckpointError

BACKBONES = {"alex": "lpips-alex", "vgg": "lpips-vgg16"}


class Perceptual(nn.Module):
    """LPIPS distance between images in [-1, 1], area-downsampled to at most `resolution`."""

    def __init__(
        self,
        net: str = "alex",
        backbone_path: Optional[str] = None,
        random_backbone: bool = False,
        resolution: Optional[int] = None,
    ) -> None:
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS network {net!r}; choose {', '.join(BACKBONES)}")
        if backbone_path is None and not random_backbone:
            raise ValueError("LPIPS needs the backbone weights file (or random_backbone=True in tests)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if backbone_path is not None:
            self._load_backbone(backbone_path)
        self.net_name = net
        self.random_backbone = random_backbone
        self.resolution = resolution
        self.eval().requires_grad_(False)

    def _load_backbone(self, path) -> None:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a plain PyTorch state dict ({str(exc).splitlines()[0]})") from None
        own = self.lpips.net.state_dict()
        mapped = {}
        for key in own:
            m = re.match(r"slice\d+\.(\d+)\.(weight|bias)$", key)
            src = f"features.{m.group(1)}.{m.group(2)}" if m else None
            if src not in sd or sd[src].shape != own[key].shape:
                raise CheckpointError(f"{path} does not fit the LPIPS {self.lpips.pnet_type} trunk ({src})")
            mapped[key] = sd[src]
        self.lpips.net.load_state_dict(mapped)

    def input_size(self, size: int) -> int:
        """The size the network sees of a `size` x `size` image (downsampled when over `resolution`)."""
        return size if self.resolution is None else min(size, self.resolution)

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Unit-normalised trunk features of images in [-1, 1] (compute a fixed target's once)."""
        size = self.input_size(x.shape[-1])
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="area")
        outs = self.lpips.net(self.lpips.scaling_layer(x))
        return [o * (o.square().sum(dim=1, keepdim=True) + 1e-10).rsqrt() for o in outs]

    def distance(self, fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor]) -> torch.Tensor:
        """LPIPS from two feature lists: learned weights on squared differences, spatially averaged."""
        total = 0.0
        for lin, a, b in zip(self.lpips.lins, fa, fb):
            total = total + lin((a - b).square()).mean(dim=[2, 3])
        return total.mean()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(a), self.features(b))


def load_perceptual(net: str, store, resolution: Optional[int] = None, fetch: bool = True) -> Perceptual:
    """LPIPS with its backbone from the weights store (downloaded on first use)."""
    path = store.require(BACKBONES[net], fetch=fetch)
    return Perceptual(net, backbone_path=str(path), resolution=resolution)
