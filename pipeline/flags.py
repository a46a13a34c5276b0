"""Click options generated from the config dataclasses' declared settings (common/options.py).

The name, default, help and range of each option are read off the dataclass field, so the command
line cannot drift from the config.  Click checks the range for a quick usage error; the dataclass
checks it again (and refuses NaN, which click's range lets through) when the config is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import click

from align.align import MAX_SIZE, MIN_FACE_PX, MIN_SIZE, AlignConfig
from common.options import Setting, settings_of
from drag.config import DRAG_OPTIONS, LOOPS, DragConfig
from inversion.config import PROFILES, inversion_settings, option_defaults
from pipeline.composite import BLENDS, DEFAULT_BLEND
from pipeline.webui.guard import split_host
from pipeline.webui.session import Limits
from weights.registry import DEFAULT_MODEL

FULL, PREVIEW, DRAG, ALIGN = option_defaults("full"), option_defaults("preview"), DragConfig(), AlignConfig()
LIMITS = Limits()  # the web editor's
DRAG_SETTINGS = settings_of(DragConfig, DRAG_OPTIONS)  # steps, lr, lambda_mask, r1, r2


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


def stack(*decorators: Callable) -> Callable:
    """One decorator applying `decorators` as if written top to bottom above a function."""

    def decorate(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return decorate


# the commands' arguments and options ------------------------------------------
def _check_hosts(ctx, param, values: tuple) -> tuple:
    """--allow-host values: host names or HOST:PORT (pipeline.webui.guard.split_host)."""
    for v in values:
        if split_host(v) is None:
            raise click.BadParameter(f"{v!r} is not a host name or HOST:PORT", param_hint="'--allow-host'")
    return values


# options several commands share, word for word
PRESET_OPTION = click.option(
    "--preset",
    "presets_",
    multiple=True,
    metavar="NAME=AMOUNT",
    help="An edit by name, e.g. smile=0.5 (see `photodrag presets`); repeatable, mixes with --drag. "
    "Its default mask applies unless --mask or --mask-circle is given.",
)
JPEG_QUALITY_OPTION = click.option(
    "--jpeg-quality",
    type=click.IntRange(1, 100),
    help="JPEG/WebP quality; default: keep the input JPEG's own quantisation tables.",
)
RUN_DIR_ARGUMENT = click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))


edit_flags = stack(  # The `edit` command's arguments and options.
    click.argument("photos", nargs=-1, type=click.Path(dir_okay=False, path_type=Path)),
    click.option(
        "--drag",
        "drags",
        multiple=True,
        metavar="X1,Y1:X2,Y2",
        help="Move the handle point (X1,Y1) to the target (X2,Y2), in photo pixels; repeatable.",
    ),
    PRESET_OPTION,
    click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path),
        help="The edited photo (a folder when editing several photos); required.",
    ),
    click.option(
        "--recipe",
        "recipe_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Edit recipe JSON (points, mask, model, stage options); RUN_DIR/recipe.json repeats an edit.",
    ),
    click.option("--model", help="ffhq-256, ffhq-512 (default), ffhq-1024, or a checkpoint file."),
    click.option("--mask-circle", metavar="X,Y,R", help="Only this circle (photo pixels) may move."),
    click.option(
        "--mask",
        "mask_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Mask image of the region allowed to move (white), the size of the photo.",
    ),
    click.option(
        "--face",
        default=None,
        help="Which face: 'largest' (default), an index (see align --list-faces), 'all', or indices like 0,2 "
        "(several faces: presets only; each face is edited in RUN_DIR/faces/N, the photo written once).",
    ),
    click.option(
        "--min-face",
        type=click.IntRange(1),
        help=f"With --face all: skip faces whose box is narrower than this many photo pixels (default {MIN_FACE_PX}).",
    ),
    click.option("--steps", type=click.IntRange(1), help=f"Drag step limit (default {DRAG.steps})."),
    click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Run folder (default: $PHOTODRAG_HOME/runs/<photo>-<hash>-<recipe hash>); finished stages are reused. "
        "An existing folder must be empty or a photodrag run folder.",
    ),
    click.option(
        "--from",
        "from_stage",
        type=click.Choice(["align", "invert", "drag", "composite"]),
        help="Recompute from this stage on, even if later stages look up to date.",
    ),
    JPEG_QUALITY_OPTION,
    click.option(
        "--overwrite-input",
        is_flag=True,
        help="Allow -o to be the input photo (the original is kept in the run folder's input/).",
    ),
    click.option(
        "--cluster",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where an album (several photos) runs: here, one photo after the other, or on Ray.",
    ),
    click.option(
        "--no-wait",
        is_flag=True,
        help="Fail at once when another photodrag process is using the run folder (default: wait for it).",
    ),
    click.option("--address", help="Ray cluster to connect to [env RAY_ADDRESS; default: start a local Ray]."),
    click.option("--workers", type=click.IntRange(1), help="Ray workers [default: one per GPU, else per CPU]."),
    blend_option(None),
    inversion_options,
)


align_flags = stack(  # The `align` command's arguments and options.
    click.argument("photo", type=click.Path(dir_okay=False, path_type=Path)),
    click.option(
        "--out",
        "run_dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Run folder; the stage writes RUN_DIR/align/.",
    ),
    click.option(
        "--size",
        type=int,
        default=ALIGN.size,
        show_default=True,
        help=f"Aligned image size: a power of two from {MIN_SIZE} to {MAX_SIZE} (the generator's resolution; "
        f"default: that of {DEFAULT_MODEL}, the default model).",
    ),
    click.option(
        "--face",
        default=ALIGN.face,
        show_default=True,
        help="Which face: 'largest' (size x detector score) or an index from --list-faces.",
    ),
    click.option(
        "--list-faces",
        is_flag=True,
        help="Only list the faces found (index, box, score) and write RUN_DIR/faces.png.",
    ),
)


invert_flags = stack(  # The `invert` command's arguments and options.
    RUN_DIR_ARGUMENT,
    click.option(
        "--model",
        default=None,
        help="ffhq-256, ffhq-512, ffhq-1024 (fetched on first use) or a checkpoint file; "
        "default: the registry generator of the aligned image's size.",
    ),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the inversion cache."),
    click.option("--fp16-cache", is_flag=True, help="Store the tuned weights as fp16 (half the size)."),
    inversion_options,
)


drag_flags = stack(  # The `drag` command's arguments and options.
    RUN_DIR_ARGUMENT,
    click.option(
        "--drag",
        "drags",
        multiple=True,
        metavar="X1,Y1:X2,Y2",
        help="Move the handle point (X1,Y1) to the target (X2,Y2); repeat for several points.",
    ),
    PRESET_OPTION,
    click.option(
        "--coords",
        type=click.Choice(["photo", "aligned"]),
        default="photo",
        show_default=True,
        help="Whether points (and masks) are in the original photo's pixels or the aligned crop's.",
    ),
    click.option(
        "--mask",
        "mask_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Image of the region allowed to move (white), the size of the photo or the crop.",
    ),
    click.option("--mask-circle", metavar="X,Y,R", help="Movable region as a circle instead of a mask image."),
    setting_options(DRAG_SETTINGS),
    click.option(
        "--loop",
        type=click.Choice(LOOPS),
        default=DRAG.loop,
        show_default=True,
        help="fast: features sampled from the 128 px map (stops the synthesis there); official: DragGAN's own "
        "loop step for step (the whole image and the map resized to it every step; slower above 128 px).",
    ),
    click.option(
        "--animate",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write an animation of the steps: steps.gif or steps.mp4 (a bare name goes in RUN_DIR/drag/).",
    ),
)


serve_flags = stack(  # The `serve` command's arguments and options.
    click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to listen on (loopback by default: only this computer can connect).",
    ),
    click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True),
    click.option(
        "--allow-host",
        "allow_hosts",
        multiple=True,
        metavar="HOST[:PORT]",
        callback=_check_hosts,
        help="Also answer requests that name HOST in their Host and Origin headers (a reverse proxy's "
        "name; without :PORT any port). Repeatable. Any other Host or Origin gets a 403.",
    ),
    click.option(
        "--max-sessions",
        type=click.IntRange(1),
        default=LIMITS.max_sessions,
        show_default=True,
        help="Photos held at once; a new upload evicts the longest-unattended session or gets a 503.",
    ),
    click.option(
        "--max-megapixels",
        type=click.FloatRange(1.0),
        default=LIMITS.max_pixels / 1e6,
        show_default=True,
        help="Total size of the photos held at once (about 5 MiB of memory per megapixel).",
    ),
    click.option(
        "--idle-minutes",
        type=click.FloatRange(0.0, min_open=True),
        default=LIMITS.idle_drop_s / 60,
        show_default=True,
        help="Drop a session whose page has not polled for this long (a closed tab's job stops within seconds).",
    ),
    click.option(
        "--model",
        default="ffhq-512",
        show_default=True,
        help="ffhq-256, ffhq-512, ffhq-1024 (fetched on first use) or a checkpoint file.",
    ),
    inversion_options,
    setting_options(DRAG_SETTINGS[1:], help_prefix="Drag: "),
    blend_option(DEFAULT_BLEND),
)


weights_import_flags = stack(  # The `weights_import` command's arguments and options.
    click.argument("name"),
    click.argument("path", type=click.Path(dir_okay=False, path_type=Path)),
    click.option(
        "--allow-unverified",
        is_flag=True,
        help="Accept a file whose hash differs from the published one (marked UNVERIFIED).",
    ),
)


presets_flags = stack(  # The `presets` command's arguments and options.
    click.option(
        "--preview",
        "run_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Draw the drags and mask of the given --preset values on RUN_DIR/align/aligned.png "
        "(a seed run: its generated picture, when a face was found in it).",
    ),
    click.option(
        "--preset",
        "presets_",
        multiple=True,
        metavar="NAME=AMOUNT",
        help="A preset and its amount (repeatable), e.g. smile=0.5; needs --preview.",
    ),
)


composite_flags = stack(  # The `composite` command's arguments and options.
    RUN_DIR_ARGUMENT,
    click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="The edited photo (same size; the format follows the extension, else the input's).",
    ),
    JPEG_QUALITY_OPTION,
    blend_option(DEFAULT_BLEND),
)


generate_flags = stack(  # The `generate` command's arguments and options.
    click.option(
        "--model",
        default="ffhq-256",
        show_default=True,
        help="Generator: ffhq-256, ffhq-512, ffhq-1024 (fetched on first use), or a .pkl/.pt/.safetensors file.",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed; z = RandomState(seed).randn(1, z_dim)."),
    click.option("--trunc", "psi", type=float, default=1.0, show_default=True, help="Truncation psi."),
    click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True),
    click.option(
        "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG (.png)."
    ),
)


seed_flags = stack(  # `seed`: DragGAN's start, a generated picture instead of a photo.
    click.option(
        "--model",
        default=DEFAULT_MODEL,
        show_default=True,
        help="Generator: a registry name (`photodrag weights list`; fetched on first use) or a checkpoint file.",
    ),
    click.option("--seed", type=int, required=True, help="Seed; z = RandomState(seed).randn(1, z_dim)."),
    click.option("--trunc", "psi", type=float, default=1.0, show_default=True, help="Truncation psi."),
    click.option(
        "--out",
        "run_dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Run folder to write (RUN_DIR/invert/: the latent, the picture, invert.json).",
    ),
)


doctor_flags = stack(  # `doctor`: where the proof goes, and JSON for scripts.
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the proof [HOME/doctor]."),
    click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts)."),
)
