"""User-facing settings declared once, on the config dataclass field, and checked once.

`setting(default, help=..., ge=..., gt=..., le=...)` is a dataclass field whose metadata carries the
option's help text and range.  The config's `__post_init__` calls `check_settings(self)`, so a bad
value is one clear line wherever it comes from (command line, recipe, web request, code).  The
front ends read `settings_of(cls)` to build their options (click, recipe schema, request body)
from the same facts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from common.errors import UsageError

SETTING = "photodrag.setting"


@dataclass(frozen=True)
class Setting:
    """One user-facing option: its name, default, type, help and range (None = unbounded).

    `name` is the option's user-facing name (`--name`, the recipe key); `field` the dataclass field
    that holds it (the same unless the config nests it, e.g. projection_steps -> ProjectionConfig.steps).
    """

    name: str
    field: str
    default: Any
    kind: type
    help: str
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        low = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}" if self.gt is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else ""
        return " and ".join(p for p in (low, high) if p) or "any number"

    def problem(self, value: Any) -> Optional[str]:
        """Why `value` is not allowed, as "must be ..." (None when it is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and not float(value).is_integer():
            return f"must be a whole number, got {value!r}"
        ok = math.isfinite(value)
        ok = ok and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        ok = ok and (self.le is None or value <= self.le)
        return None if ok else f"must be {self.range_text()}, got {value!r}"


def setting(
    default: Any,
    *,
    help: str,
    ge: Optional[float] = None,
    gt: Optional[float] = None,
    le: Optional[float] = None,
    name: Optional[str] = None,
) -> Any:
    """A dataclass field that is a user-facing numeric option (see the module docstring).

    `name` is the option's name where it differs from the field's."""
    meta = {SETTING: dict(help=help, ge=ge, gt=gt, le=le, name=name)}
    return dataclasses.field(default=default, metadata=meta)


def settings_of(cls: type, names: Optional[Tuple[str, ...]] = None) -> Tuple[Setting, ...]:
    """The declared settings of a config dataclass, in field order (or in the order of `names`)."""
    found = {}
    for f in dataclasses.fields(cls):
        if SETTING in f.metadata:
            meta = dict(f.metadata[SETTING])
            name = meta.pop("name") or f.name
            found[name] = Setting(name, f.name, f.default, type(f.default), **meta)
    return tuple(found[n] for n in (names or tuple(found)))


def check_settings(config: Any) -> None:
    """Raise one UsageError naming the first setting of `config` that is out of its range."""
    for s in settings_of(type(config)):
        why = s.problem(getattr(config, s.field))
        if why:
            raise UsageError(f"{s.name} {why}")
