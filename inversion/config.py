"""Inversion settings, with PTI's reference defaults written once, and the named profiles.

`full` (the default) is PTI as its official code runs (the dataclass defaults below; the README's
"PTI defaults" table says where each value comes from).  `preview` is a faster schedule for trying
points on a CPU (fewer steps, projection with LPIPS(AlexNet): about a fifth of the time; a blurrier,
less faithful reconstruction); its values are in PROFILES.  Both tune with LPIPS on the full-resolution
images: downsampling it to 256 saved only about 7% of a tuning step at 512 (benchmarks/inversion.py
--tuning-lpips), so the threshold keeps PTI's meaning in both.  Explicit options override the
profile's values.  The command line, the recipe and the web editor take their defaults and help
text from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Optional, Tuple

from common.errors import UsageError
from common.options import Setting, check_settings, setting, settings_of


@dataclass(frozen=True)
class ProjectionConfig:
    """W / W+ projection (PTI's w_projector, after stylegan2-ada's projector)."""

    steps: int = setting(450, name="projection_steps", help="Projection steps", ge=1)
    # the peak of the schedule below, applied from step 0: PTI runs project()'s own default 0.01 (its
    # hyperparameters.first_inv_lr = 5e-3 only seeds the optimiser, whose lr the schedule overwrites)
    lr: float = 0.01
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_avg_samples: int = 600  # PTI; stylegan2-ada's projector uses 10,000
    w_avg_seed: int = 123  # the fixed seed both projectors use for the w statistics
    initial_noise_factor: float = 0.05
    noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    optimize_noise: bool = True
    w_plus: bool = False
    lpips_net: str = "vgg"  # the projectors' perceptual loss is LPIPS(VGG16)
    loss_resolution: int = 256  # images larger than this are area-downsampled for the loss

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class TuningConfig:
    """Pivotal tuning: the generator is trained, the pivot w is fixed."""

    steps: int = setting(350, name="tuning_steps", help="Pivotal tuning step limit", ge=0)
    lr: float = 3e-4
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_threshold: float = setting(
        0.06, help="Stop tuning once LPIPS(alex), on the full-resolution images as PTI, falls to this", ge=0
    )
    lpips_net: str = "alex"
    # LPIPS of the loss and of the stop rule: None = on the full-resolution images, as PTI (its 0.06
    # threshold assumes that); a number = area-downsampled to at most that size (photodrag's old 256)
    lpips_resolution: Optional[int] = None
    # False: tune the checkpoint's own noise maps, as PTI (it optimises noise only in a throwaway copy
    # during projection); True: tune the generator holding the projection's optimised noise maps
    keep_projection_noise: bool = False
    locality_regularization: bool = False  # off by default in PTI
    locality_alpha: float = 30.0
    locality_l2_weight: float = 0.1
    locality_lpips_weight: float = 0.1
    locality_truncation: float = 0.5  # PTI samples the regulariser's latents with truncation psi 0.5
    locality_noise_mode: str = "none"  # and renders them without noise

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class InversionConfig:
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    seed: int = setting(0, help="Seed of the inversion's noise", ge=0)
    profile: str = "full"  # a label for people; the values above decide the result

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict:
        return asdict(self)

    def canonical_json(self) -> str:
        """The settings that decide the result (the cache key's part): the profile label is left out."""
        d = self.to_dict()
        d.pop("profile")
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def options(self) -> dict:
        """The user-facing options (recipe "invert" section) that reproduce this config."""
        return {
            "profile": self.profile,
            "w_plus": self.projection.w_plus,
            "projection_steps": self.projection.steps,
            "tuning_steps": self.tuning.steps,
            "lpips_threshold": self.tuning.lpips_threshold,
            "projection_lpips": self.projection.lpips_net,
            "keep_projection_noise": self.tuning.keep_projection_noise,
            "seed": self.seed,
        }

    def perceptual_nets(self) -> list:
        """The (net, resolution) LPIPS networks an inversion with this config asks for (None = full size)."""
        p, t = self.projection, self.tuning
        return sorted(
            {(p.lpips_net, p.loss_resolution), ("alex", p.loss_resolution), (t.lpips_net, t.lpips_resolution)}, key=str
        )


def inversion_settings() -> Tuple[Setting, ...]:
    """The numeric user-facing inversion options, declared on the dataclasses above, in help order."""
    return (*settings_of(ProjectionConfig), *settings_of(TuningConfig), *settings_of(InversionConfig))


PROFILES = {
    "full": {},
    "preview": {"projection_steps": 100, "tuning_steps": 50, "projection_lpips": "alex"},
}


def make_config(
    profile: str = "full",
    *,
    w_plus: Optional[bool] = None,
    projection_steps: Optional[int] = None,
    tuning_steps: Optional[int] = None,
    lpips_threshold: Optional[float] = None,
    projection_lpips: Optional[str] = None,
    keep_projection_noise: Optional[bool] = None,
    seed: Optional[int] = None,
) -> InversionConfig:
    """The config of a named profile with the options that were given (None = the profile's value).

    The ranges are the dataclasses' own (`setting(...)`): building the config checks them."""
    if profile not in PROFILES:
        raise UsageError(f"unknown inversion profile {profile!r}; known: {', '.join(PROFILES)}")
    given = dict(
        w_plus=w_plus,
        projection_steps=projection_steps,
        tuning_steps=tuning_steps,
        lpips_threshold=lpips_threshold,
        projection_lpips=projection_lpips,
        keep_projection_noise=keep_projection_noise,
        seed=seed,
    )
    o = dict(PROFILES[profile], **{k: v for k, v in given.items() if v is not None})
    if o.get("projection_lpips", "vgg") not in ("vgg", "alex"):
        raise UsageError("the projection LPIPS must be vgg or alex")
    base = InversionConfig()
    p, t = base.projection, base.tuning
    return replace(
        base,
        profile=profile,
        seed=o.get("seed", base.seed),
        projection=replace(
            p,
            steps=o.get("projection_steps", p.steps),
            w_plus=o.get("w_plus", p.w_plus),
            lpips_net=o.get("projection_lpips", p.lpips_net),
        ),
        tuning=replace(
            t,
            steps=o.get("tuning_steps", t.steps),
            lpips_threshold=o.get("lpips_threshold", t.lpips_threshold),
            keep_projection_noise=o.get("keep_projection_noise", t.keep_projection_noise),
        ),
    )


def option_defaults(profile: str = "full") -> dict:
    """The user-facing options of a profile with nothing overridden (for help texts)."""
    return make_config(profile).options()
