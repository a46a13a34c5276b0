"""Inversion settings, with PTI's reference defaults written once."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ProjectionConfig:
    """W / W+ projection (PTI's w_projector, after stylegan2-ada's projector)."""

    steps: int = 450
    lr: float = 5e-3
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_avg_samples: int = 600            # PTI; stylegan2-ada's projector uses 10,000
    w_avg_seed: int = 123               # the fixed seed both projectors use for the w statistics
    initial_noise_factor: float = 0.05
    noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    optimize_noise: bool = True
    w_plus: bool = False
    lpips_net: str = "vgg"              # the projectors' perceptual loss is LPIPS(VGG16)
    loss_resolution: int = 256          # images larger than this are area-downsampled for the loss


@dataclass(frozen=True)
class TuningConfig:
    """Pivotal tuning: the generator is trained, the pivot w is fixed."""

    steps: int = 350
    lr: float = 3e-4
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_threshold: float = 0.06       # stop as soon as LPIPS(alex) falls below this
    lpips_net: str = "alex"
    locality_regularization: bool = False  # off by default in PTI
    locality_alpha: float = 30.0
    locality_l2_weight: float = 0.1
    locality_lpips_weight: float = 0.1


@dataclass(frozen=True)
class InversionConfig:
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "InversionConfig":
        return cls(projection=ProjectionConfig(**d.get("projection", {})),
                   tuning=TuningConfig(**d.get("tuning", {})), seed=d.get("seed", 0))
