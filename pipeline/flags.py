"""Click options generated from the config dataclasses' declared settings (common/options.py).

The name, default, help and range of each option are read off the dataclass field, so the command
line cannot drift from the config.  Click checks the range for a quick usage error; the dataclass
checks it again (and refuses NaN, which click's range lets through) when the config is built.
"""

from __future__ import annotations

from typing import Callable, Iterable

import click

from common.options import Setting


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
