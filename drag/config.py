"""The drag settings, each default written once (the CLI, recipe and web editor derive from it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DragConfig:
    """DragGAN's reference settings for FFHQ (paper and official code)."""

    steps: int = 300
    lr: float = 2e-3
    lambda_mask: float = 20.0
    r1: float = 3.0  # motion-supervision radius at 512 px
    r2: float = 12.0  # tracking radius at 512 px
    layers: int = 6  # optimise w[:, :layers]; the rest stays at the pivot
    feature_block: str = "b128"
    stall_steps: int = 40  # stop when the total distance has not improved by
    stall_min_gain: float = 0.5  # stall_min_gain px over this many steps
