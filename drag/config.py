"""The drag settings, each default and range written once (the CLI, recipe and web editor derive from it)."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import UsageError
from common.options import check_settings, setting

# The half-pixel rule, in aligned pixels: a drag shorter than this is refused (DragGAN refuses
# zero-length drags), two handles closer than this are one handle, and a preset leaves out the
# landmarks it would move less than this (drag/points.py, drag/presets.py).
MIN_DRAG_PX = 0.5

# the settings a user sets (command line, recipe "drag" section, web editor); the rest are fixed rules
DRAG_OPTIONS = ("steps", "lr", "lambda_mask", "r1", "r2")

# the latent space a drag optimises (DragGAN's GUI offers both): "w+" one vector per layer of
# w[:, :layers]; "w" one vector shared by those layers (the first layer's, broadcast)
LATENTS = ("w+", "w")

# how each step computes the features: "fast" stops the synthesis after the feature block and samples
# its map directly; "official" renders the whole image and resizes the map to image size every step,
# as DragGAN's code does (the same loop step for step, slower; drag/engine.py)
LOOPS = ("fast", "official")


@dataclass(frozen=True)
class DragConfig:
    """DragGAN's reference settings for FFHQ (paper and official code)."""

    steps: int = setting(300, help="Step limit.", ge=1)
    lr: float = setting(2e-3, help="Adam learning rate on w[:, :6].", gt=0)
    lambda_mask: float = setting(20.0, help="Weight of keeping features outside the mask unchanged.", ge=0)
    r1: float = setting(3.0, help="Motion supervision radius at 512 px.", gt=0)
    r2: float = setting(12.0, help="Point tracking radius at 512 px.", gt=0)
    layers: int = setting(6, help="Optimise w[:, :layers]; the rest stays at the pivot.", ge=1)
    latent: str = "w+"  # one of LATENTS
    loop: str = "fast"  # one of LOOPS
    feature_block: str = "b128"
    # stop when the total distance has not improved by stall_min_gain px over stall_steps steps
    stall_steps: int = setting(40, help="Steps without progress before the drag stops.", ge=1)
    stall_min_gain: float = setting(0.5, help="Progress (px) that counts against a stall.", ge=0)
    # stop ("reached") once every handle is within `reach` px of its target, or within `reach_many`
    # px when more than `reach_few` points are dragged
    reach: float = setting(1.0, help="Stop distance (px) for a few points.", ge=0)
    reach_many: float = setting(2.0, help="Stop distance (px) for many points.", ge=0)
    reach_few: int = setting(5, help="Up to this many points count as a few.", ge=0)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.latent not in LATENTS:
            raise UsageError(f"latent must be one of {', '.join(LATENTS)}, got {self.latent!r}")
        if self.loop not in LOOPS:
            raise UsageError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")

    def stop_distance(self, points: int) -> float:
        """The reach for a drag of `points` handles: the 1 px / 2 px stop rule."""
        return self.reach if points <= self.reach_few else self.reach_many
