"""Edit recipes: everything an edit needs besides the photo, as validated JSON.

Schema (every key is optional but at least one of "drags" and "presets"; defaults are the tool's):

    {
      "version": 1,
      "photo": "face.jpg",                 # used when no PHOTO is given on the command line
      "seed": {"seed": 1, "psi": 0.7},     # instead of a photo: start from this seed of "model"
                                           # (DragGAN's workflow; coords are the picture's pixels)
      "model": "ffhq-512",                 # registry name or checkpoint path
      "coords": "photo",                   # photo (pixels) | relative (0..1 of width/height) | aligned
      "drags": [{"handle": [x, y], "target": [x, y]}, ...],
      "presets": {"smile": 0.5, ...},      # edits by name (drag/presets.py): drags derived from each
                                           # photo's own landmarks, so one recipe fits every photo
      "mask": {"circle": [x, y, r]} | {"path": "mask.png"},   # movable region (same coords)
      "align": {"face": "largest", "size": 512, "min_face": 64},
                                           # face: "largest" | index | "all" | [0, 2] (several faces:
                                           # presets only, each from its own landmarks); min_face:
                                           # with "all", faces whose box is narrower are skipped
      "faces": {"0": {"drags": [...]}, "2": {"presets": {...}}},
                                           # several faces: a named face gets exactly its own edit
                                           # (pixel drags allowed here), the others the top-level presets
      "invert": {"profile", "w_plus", "projection_steps", "tuning_steps", "lpips_threshold",
                 "projection_lpips", "keep_projection_noise", "seed"},
                                           # defaults: inversion/config.py (InversionConfig,
                                           # PROFILES); keys left out take the profile's values
      "drag": {"steps", "lr", "lambda_mask", "r1", "r2", "latent", "loop"},  # defaults: drag/config.py
                                           # (DragConfig); latent "w+" (default) | "w";
                                           # loop "fast" (default) | "official" (DragGAN's own loop)
      "composite": {"blend": "photo"}      # photo (the photo's own pixels moved) | generator (face paste)
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from align.align import MAX_SIZE, MIN_SIZE, valid_size
from common.errors import UsageError
from common.options import settings_of
from drag.config import DRAG_OPTIONS, DragConfig
from drag.presets import check_amount, get_preset
from inversion.config import InversionConfig, make_config
from pipeline.composite import BLENDS, DEFAULT_BLEND
from weights.registry import REGISTRY

VERSION = 1
COORDS = ("photo", "relative", "aligned")
_INVERT_KEYS = {
    "profile": str,
    "w_plus": bool,
    "projection_steps": int,
    "tuning_steps": int,
    "lpips_threshold": (int, float),
    "projection_lpips": str,
    "keep_projection_noise": bool,
    "seed": int,
}
# the "drag" section: names, types and defaults from DragConfig's declared settings
_DRAG_KEYS = {x.name: int if x.kind is int else (int, float) for x in settings_of(DragConfig, DRAG_OPTIONS)}
_DRAG_DEFAULTS = {x.name: x.default for x in settings_of(DragConfig, DRAG_OPTIONS)}
_DRAG_KEYS["latent"] = str  # W+ or W (drag/config.py LATENTS); written only when it is not W+
_DRAG_KEYS["loop"] = str  # fast or official (drag/config.py LOOPS); written only when it is not fast


def drag_section(config: DragConfig) -> Dict[str, Any]:
    """A recipe's "drag" section for `config`: its user options, and "latent" when it is W (a W+
    recipe stays as it was before W existed)."""
    out = {name: getattr(config, name) for name in DRAG_OPTIONS}
    if config.latent != DragConfig.latent:
        out["latent"] = config.latent
    if config.loop != DragConfig.loop:
        out["loop"] = config.loop
    return out


@dataclass(frozen=True)
class FaceEdit:
    """One face's own edit in a several-face recipe ("faces": {"2": {...}}): its drags and presets."""

    drags: Tuple[Tuple[Tuple[float, float], Tuple[float, float]], ...] = ()
    presets: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: Dict[str, Any] = {"drags": [{"handle": list(h), "target": list(t)} for h, t in self.drags]}
        if self.presets:
            out["presets"] = dict(self.presets)
        return out


@dataclass(frozen=True)
class Recipe:
    drags: Tuple[Tuple[Tuple[float, float], Tuple[float, float]], ...] = ()
    presets: Dict[str, float] = field(default_factory=dict)  # name -> amount, from each photo's landmarks
    coords: str = "photo"
    photo: Optional[str] = None
    model: Optional[str] = None
    mask_circle: Optional[Tuple[float, float, float]] = None
    mask_path: Optional[str] = None
    face: Any = "largest"
    size: Optional[int] = None
    invert: Dict[str, Any] = field(default_factory=dict)  # only the options given; see make_config
    drag: Dict[str, Any] = field(default_factory=lambda: dict(_DRAG_DEFAULTS))
    blend: str = DEFAULT_BLEND  # how the edit goes back into the photo (pipeline/composite.py)
    seed: Optional[Dict[str, Any]] = None  # {"seed": int, "psi": float}: a generated start, no photo
    min_face: Optional[int] = None  # face "all": skip faces whose box is narrower (px); None: align's MIN_FACE_PX
    face_edits: Dict[int, FaceEdit] = field(default_factory=dict)  # several faces: a face's own edit

    def to_json(self) -> dict:
        out = {
            "version": VERSION,
            "coords": self.coords,
            "drags": [{"handle": list(h), "target": list(t)} for h, t in self.drags],
            "align": {"face": list(self.face) if isinstance(self.face, tuple) else self.face, "size": self.size},
            "invert": dict(self.invert),
            "drag": dict(self.drag),
            "composite": {"blend": self.blend},
        }
        if self.presets:
            out["presets"] = dict(self.presets)
        if self.min_face is not None:
            out["align"]["min_face"] = self.min_face
        if self.face_edits:
            out["faces"] = {str(n): e.to_json() for n, e in sorted(self.face_edits.items())}
        if self.photo:
            out["photo"] = self.photo
        if self.seed is not None:
            out["seed"] = dict(self.seed)
        if self.model:
            out["model"] = self.model
        if self.mask_circle:
            out["mask"] = {"circle": list(self.mask_circle)}
        elif self.mask_path:
            out["mask"] = {"path": self.mask_path}
        return out

    @property
    def presets_only(self) -> bool:
        """Only edits by name (no pixel drags): the same recipe fits any photo of a face."""
        return bool(self.presets) and not self.drags and not any(e.drags for e in self.face_edits.values())

    @property
    def several_faces(self) -> bool:
        """Whether the recipe edits several faces ("all" or a list of indices), each in RUN/faces/N."""
        return self.face == "all" or isinstance(self.face, tuple)

    def for_face(self, index: int) -> "Recipe":
        """The one-face recipe of face `index` of a several-face recipe: its own edit, or the top-level presets."""
        own = self.face_edits.get(index)
        drags, presets = (own.drags, own.presets) if own is not None else (self.drags, self.presets)
        return replace(self, face=index, drags=drags, presets=dict(presets), min_face=None, face_edits={})

    def inversion_config(self) -> InversionConfig:
        return make_config(**self.invert)

    def drag_config(self) -> DragConfig:
        return DragConfig(**self.drag)

    def as_ran(self, photo: Path, model: str, config: InversionConfig) -> dict:
        """RUN_DIR/recipe.json: this recipe with absolute paths and every inversion option spelled out."""
        ran = self.to_json()
        ran.update(
            photo=str(Path(photo).resolve()),
            model=model if model in REGISTRY else str(Path(model).resolve()),
            invert=config.options(),
        )
        if self.mask_path:
            ran["mask"] = {"path": str(Path(self.mask_path).resolve())}
        return ran


def _fail(where: str, msg: str) -> None:
    raise UsageError(f"recipe {where}: {msg}")


def _is_number(v) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num_pair(value, where: str) -> Tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
        _fail(where, "must be [x, y] with two finite numbers")
    return float(value[0]), float(value[1])


def _section(data: dict, name: str, schema: dict, defaults: dict, where: str) -> dict:
    sec = data.get(name, {})
    if not isinstance(sec, dict):
        _fail(where, f'"{name}" must be an object')
    unknown = set(sec) - set(schema)
    if unknown:
        _fail(where, f'unknown "{name}" keys {sorted(unknown)}; known: {sorted(schema)}')
    out = dict(defaults)
    for k, v in sec.items():
        if isinstance(v, bool) and schema[k] is not bool or not isinstance(v, schema[k]):
            _fail(where, f'"{name}.{k}" has the wrong type ({type(v).__name__})')
        if isinstance(v, float) and not math.isfinite(v):
            _fail(where, f'"{name}.{k}" must be a finite number, not {v}')
        out[k] = v
    return out


def with_presets(recipe: Recipe, amounts: Dict[str, float]) -> Recipe:
    """The recipe with these (already checked) preset amounts added, replacing its own of the same name."""
    presets = dict(recipe.presets, **amounts)
    if not recipe.drags and not any(presets.values()):
        raise UsageError("nothing to drag: every preset amount is 0 and no --drag is given")
    return replace(recipe, presets=presets)


def _presets(value, where: str) -> Dict[str, float]:
    """ "presets": {name: amount}, each name known and each amount a number in its range."""
    if not isinstance(value, dict):
        _fail(where, '"presets" must be an object {"name": amount}, e.g. {"smile": 0.5}')
    out = {}
    for name, amount in value.items():
        try:
            get_preset(name)
            out[name] = check_amount(name, amount)
        except UsageError as exc:
            _fail(where, f'"presets": {exc}')
    return out


def parse_recipe(data: Any, where: str = "") -> Recipe:
    """Validate a recipe object; every problem is one clear UsageError."""
    where = where or "JSON"
    if not isinstance(data, dict):
        _fail(where, "the top level must be an object")
    known = {
        "version",
        "photo",
        "seed",
        "model",
        "coords",
        "drags",
        "presets",
        "mask",
        "align",
        "invert",
        "drag",
        "composite",
        "faces",
    }
    unknown = set(data) - known
    if unknown:
        _fail(where, f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    if data.get("version", VERSION) != VERSION:
        _fail(where, f"version {data.get('version')} is not supported (this tool reads version {VERSION})")
    coords = data.get("coords", "photo")
    if coords not in COORDS:
        _fail(where, f'"coords" must be one of {", ".join(COORDS)}')
    for key in ("photo", "model"):
        if key in data and not isinstance(data[key], str):
            _fail(where, f'"{key}" must be a string')
    presets = _presets(data.get("presets", {}), where)
    face_edits = _face_edits(data.get("faces", {}), where)
    drags = _drags(data, presets, where) if not face_edits or "drags" in data else ()
    circle, path = _mask(data.get("mask"), where)
    face, size, min_face = _align(data.get("align", {}), where)
    if face_edits and "face" not in data.get("align", {}):
        face = tuple(sorted(face_edits))  # "faces" alone names the faces to edit
    inv, drag, blend = _stage_sections(data, where)
    recipe = Recipe(
        drags=drags,
        presets=presets,
        coords=coords,
        photo=data.get("photo"),
        model=data.get("model"),
        mask_circle=circle,
        mask_path=path,
        face=face,
        size=size,
        invert=inv,
        drag=drag,
        blend=blend,
        seed=_seed(data, where),
        min_face=min_face,
        face_edits=face_edits,
    )
    try:
        return check_faces(recipe)
    except UsageError as exc:
        _fail(where, str(exc))


def check_faces(recipe: Recipe) -> Recipe:
    """Refuse what cannot apply to several faces: top-level pixel drags and masks (each lands on one face),
    per-face edits without several faces, a per-face edit of a face not chosen."""
    if not recipe.several_faces:
        if recipe.face_edits:
            raise UsageError('"faces" (per-face edits) needs several faces: "align.face" "all" or a list')
        if recipe.min_face is not None:
            raise UsageError('"min_face" goes with "align.face": "all" (it says which faces are too small)')
        return recipe
    if recipe.drags:
        raise UsageError(
            "pixel drags move one face: with several faces give presets, or each face's drags in a recipe's "
            '"faces": {"0": {"drags": [...]}}'
        )
    if recipe.mask_circle or recipe.mask_path:
        raise UsageError("a mask covers one face: with several faces each preset uses its own default mask")
    if isinstance(recipe.face, tuple):
        if recipe.min_face is not None:
            raise UsageError('"min_face" goes with "align.face": "all" (faces named by index are never skipped)')
        extra = sorted(set(recipe.face_edits) - set(recipe.face))
        if extra:
            raise UsageError(f'"faces" gives an edit for face {extra[0]}, which is not among the chosen faces')
    return recipe


def _face_edits(value: Any, where: str) -> Dict[int, FaceEdit]:
    """ "faces": {"0": {"drags": [...], "presets": {...}}, ...}: each face's own edit, by index."""
    if not isinstance(value, dict):
        _fail(where, '"faces" must be an object {"0": {"drags": [...]}, "2": {"presets": {...}}}')
    out = {}
    for key, edit in value.items():
        if not (isinstance(key, str) and key.isdigit()):
            _fail(where, f'"faces" keys are face indices ("0", "1", ...), not {key!r}')
        if not isinstance(edit, dict) or not edit or set(edit) - {"drags", "presets"}:
            _fail(where, f'"faces.{key}" must be an object with "drags" and/or "presets"')
        presets = _presets(edit.get("presets", {}), f"{where} faces.{key}")
        out[int(key)] = FaceEdit(drags=_drags(edit, presets, f"{where} faces.{key}"), presets=presets)
    return out


def _seed(data: dict, where: str) -> Optional[Dict[str, Any]]:
    """ "seed": {"seed": int in [0, 2**32), "psi": finite number}, never with "photo" or the photo's
    stages' sections ("align", "faces", "invert", "composite")."""
    if "seed" not in data:
        return None
    sec = _section(data, "seed", {"seed": int, "psi": (int, float)}, {"psi": 1.0}, where)
    if not (isinstance(sec.get("seed"), int) and 0 <= sec["seed"] < 2**32):
        _fail(where, '"seed.seed" must be an integer in [0, 2**32)')
    if "photo" in data:
        _fail(where, 'give either "photo" or "seed": a seed run starts from a generated picture, not a photo')
    for key, stage in (("align", "aligned"), ("faces", "aligned"), ("invert", "inverted"), ("composite", "composited")):
        if key in data:
            _fail(where, f'"{key}" does not apply to a "seed" recipe: a generated picture is not {stage}')
    return {"seed": sec["seed"], "psi": float(sec["psi"])}


def _drags(data: dict, presets: Dict[str, float], where: str) -> tuple:
    """ "drags": [{"handle": [x, y], "target": [x, y]}, ...], non-empty unless presets move something."""
    drags = data.get("drags", [] if presets else None)
    if not isinstance(drags, list) or not (drags or presets):
        _fail(
            where,
            '"drags" must be a non-empty list of {"handle": [x, y], "target": [x, y]} '
            '(or give "presets": {"smile": 0.5, ...})',
        )
    if not drags and not any(presets.values()):
        _fail(where, 'nothing to drag: every "presets" amount is 0 and there are no "drags"')
    pairs: List = []
    for i, d in enumerate(drags):
        if not isinstance(d, dict) or set(d) != {"handle", "target"}:
            _fail(where, f'drags[{i}] must be {{"handle": [x, y], "target": [x, y]}}')
        pairs.append(
            (_num_pair(d["handle"], f"{where} drags[{i}].handle"), _num_pair(d["target"], f"{where} drags[{i}].target"))
        )
    return tuple(pairs)


def _mask(mask: Any, where: str) -> Tuple[Optional[tuple], Optional[str]]:
    """ "mask": {"circle": [x, y, r]} or {"path": "mask.png"} -> (circle, path)."""
    if mask is None:
        return None, None
    if not isinstance(mask, dict) or len(mask) != 1 or not set(mask) <= {"circle", "path"}:
        _fail(where, '"mask" must be {"circle": [x, y, r]} or {"path": "mask.png"}')
    if "circle" in mask:
        c = mask["circle"]
        if not (isinstance(c, list) and len(c) == 3 and all(_is_number(v) for v in c) and c[2] > 0):
            _fail(where, '"mask.circle" must be [x, y, r] with r > 0')
        return tuple(float(v) for v in c), None
    if not isinstance(mask["path"], str):
        _fail(where, '"mask.path" must be a file name')
    return None, mask["path"]


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _align(align: Any, where: str) -> Tuple[Any, Optional[int], Optional[int]]:
    """ "align": {"face": "largest" | index | "all" | [indices], "size": power of two, "min_face": px}
    -> (face, size, min_face); a list of one index is that index."""
    if not isinstance(align, dict) or set(align) - {"face", "size", "min_face"}:
        _fail(where, '"align" may only hold "face", "size" and "min_face"')
    face = align.get("face", "largest")
    if isinstance(face, list) and face and all(_is_index(v) for v in face) and len(set(face)) == len(face):
        face = tuple(sorted(face)) if len(face) > 1 else face[0]
    if not (face in ("largest", "all") or _is_index(face) or isinstance(face, tuple)):
        _fail(where, '"align.face" must be "largest", a face index, "all" or a list of distinct indices')
    size = align.get("size")
    if size is not None and not valid_size(size):
        _fail(where, f'"align.size" must be a power of two from {MIN_SIZE} to {MAX_SIZE}')
    min_face = align.get("min_face")
    if min_face is not None and not (_is_index(min_face) and min_face > 0):
        _fail(where, '"align.min_face" must be a whole number of pixels above 0')
    return face, size, min_face


def _stage_sections(data: dict, where: str) -> Tuple[dict, dict, str]:
    """The "invert", "drag" and "composite" sections, each checked by its config."""
    inv = _section(data, "invert", _INVERT_KEYS, {}, where)
    try:
        make_config(**inv)
    except UsageError as exc:
        _fail(where, f'"invert": {exc}')
    drag = _section(data, "drag", _DRAG_KEYS, _DRAG_DEFAULTS, where)
    try:
        DragConfig(**drag)
    except UsageError as exc:
        _fail(where, f'"drag": {exc}')
    blend = _section(data, "composite", {"blend": str}, {"blend": DEFAULT_BLEND}, where)["blend"]
    if blend not in BLENDS:
        _fail(where, f'"composite.blend" must be one of {", ".join(BLENDS)}, not {blend!r}')
    return inv, drag, blend


def _no_constant(name: str):
    """json's NaN/Infinity/-Infinity extension is not JSON: refuse it."""
    raise ValueError(f"{name} is not a number JSON allows")


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file; relative photo/mask paths are taken from its folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(), parse_constant=_no_constant)
    except FileNotFoundError:
        raise UsageError(f"recipe not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"recipe {path} is unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"recipe {path} is not valid JSON ({exc})") from None
    r = parse_recipe(data, str(path))
    base = path.parent
    if r.photo and not Path(r.photo).is_absolute():
        r = replace(r, photo=str(base / r.photo))
    if r.mask_path and not Path(r.mask_path).is_absolute():
        r = replace(r, mask_path=str(base / r.mask_path))
    return r
