"""Click options generated from the config dataclasses' declared settings (common/options.py).

The name, default, help and range of each option are read off the dataclass field, so the command
line cannot drift from the config.  Click checks the range for a quick usage error; the dataclass
checks it again (and refuses NaN, which click's range lets through) when the config is built.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import click

from common.options import Setting
from inversion.config import PROFILES, inversion_settings, option_defaults
from pipeline.composite import BLENDS, DEFAULT_BLEND

FULL, PREVIEW = option_defaults("full"), option_defaults("preview")


def click_type(s: Setting) -> click.ParamType:
    """The click range type of one setting."""
    if s.kind is int:
        return click.IntRange(min=s.ge, max=s.le)
    low = s.ge if s.ge is not None else s.gt
    return click.FloatRange(min=low, min_open=s.gt is not None, max=s.le)


def setting_option(s: Setting, *, defaults: bool = True, help_prefix: str = "", help: str = "") -> Callable:
    """`--name` for one setting; with `defaults=False` it defaults to None (unset: the caller's default).

    `help` replaces the setting's own help text (e.g. to name per-profile defaults)."""
    extra = dict(default=s.default, show_default=True) if defaults else dict(default=None)
    text = help or help_prefix + s.help
    return click.option(s.flag, s.name, type=click_type(s), callback=_checked(s), help=text, **extra)


def _checked(s: Setting) -> Callable:
    """A click callback applying the setting's own check (click's ranges let NaN and inf through)."""

    def check(ctx: click.Context, param: click.Parameter, value):
        why = None if value is None else s.problem(value)
        if why:
            raise click.BadParameter(why, ctx=ctx, param=param)
        return value

    return check


def setting_options(settings: Iterable[Setting], *, defaults: bool = True, help_prefix: str = "") -> Callable:
    """A decorator adding one option per setting, in the given order."""
    opts = [setting_option(s, defaults=defaults, help_prefix=help_prefix) for s in settings]

    def decorate(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def given(kwargs: dict, settings: Iterable[Setting]) -> dict:
    """Pop the settings' values out of a command's kwargs: name -> value, None (not given) left out."""
    out = {s.name: kwargs.pop(s.name) for s in settings}
    return {k: v for k, v in out.items() if v is not None}


# inversion options (the same on invert, edit and serve) -------------------------
INVERSION_OPTIONS = (
    "preview",
    "w_plus",
    "projection_steps",
    "tuning_steps",
    "lpips_threshold",
    "projection_lpips",
    "keep_projection_noise",
    "seed",
)


def profile_option(x: Setting):
    """An inversion option (declared on its config dataclass) whose default is the chosen profile's."""
    preview = f"; preview {PREVIEW[x.name]}" if x.name in PROFILES["preview"] else ""
    return setting_option(x, defaults=False, help=f"{x.help} [default: {FULL[x.name]}{preview}].")


def inversion_options(f):
    """--preview, --w-plus, --projection-steps, --tuning-steps, --lpips-threshold, --projection-lpips,
    --keep-projection-noise, --seed."""
    opts = [
        click.option(
            "--preview",
            is_flag=True,
            default=None,
            help=f"The fast preview profile for trying points on a CPU: {PREVIEW['projection_steps']} "
            f"projection steps with LPIPS({PREVIEW['projection_lpips']}), up to "
            f"{PREVIEW['tuning_steps']} tuning steps (about 5x faster, rougher likeness). "
            "Default: the full PTI schedule.",
        ),
        click.option("--w-plus", is_flag=True, default=None, help="Project into W+ (one w per layer) instead of W."),
        *(profile_option(x) for x in inversion_settings()[:3]),
        click.option(
            "--projection-lpips",
            type=click.Choice(["vgg", "alex"]),
            help=f"Perceptual loss of the projection [default: {FULL['projection_lpips']} (the projectors'); "
            f"preview {PREVIEW['projection_lpips']}].",
        ),
        click.option(
            "--keep-projection-noise",
            is_flag=True,
            default=None,
            help="Tune the generator with the noise maps the projection optimised "
            "[default: the checkpoint's own noise maps, as PTI].",
        ),
        profile_option(inversion_settings()[3]),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def given_inversion_options(kwargs: dict) -> dict:
    """The inversion options the user gave, as recipe "invert" keys (profile instead of --preview)."""
    given = {k: kwargs.pop(k) for k in INVERSION_OPTIONS}
    out = {k: v for k, v in given.items() if v is not None and k != "preview"}
    if given["preview"]:
        out["profile"] = "preview"
    return out


BLEND_HELP = (
    "How the edit goes back into the photo: photo = the photo's own pixels moved by the edit's motion, "
    "with what is new from the generator, untouched elsewhere; generator = the generator's whole face "
    "pasted back (for comparison, or edits that change most of the face)."
)


def blend_option(default: Optional[str]):
    """--blend photo|generator (`default` None: the recipe's, itself photo by default)."""
    return click.option(
        "--blend",
        type=click.Choice(BLENDS),
        default=default,
        show_default=default is not None,
        help=BLEND_HELP + ("" if default else f" [default: the recipe's, else {DEFAULT_BLEND}]"),
    )
