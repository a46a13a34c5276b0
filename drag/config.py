"""The drag settings, each default written once (the CLI, recipe and web editor derive from it)."""

from __future__ import annotations

from dataclasses import dataclass

# The half-pixel rule, in aligned pixels: a drag shorter than this is refused (DragGAN refuses
# zero-length drags), two handles closer than this are one handle, and a preset leaves out the
# landmarks it would move less than this (drag/points.py, drag/presets.py).
MIN_DRAG_PX = 0.5


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
    reach: float = 1.0  # stop ("reached") once every handle is within this many px of its target,
    reach_many: float = 2.0  # or within this many px when more than `reach_few` points are dragged
    reach_few: int = 5

    def stop_distance(self, points: int) -> float:
        """The reach for a drag of `points` handles: the 1 px / 2 px stop rule."""
        return self.reach if points <= self.reach_few else self.reach_many
