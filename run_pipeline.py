"""photodrag command line: edit a face photo by dragging points (DragGAN on a PTI inversion).

Every error is reported as one line: exit code 2 for bad usage or input, 1 for an
internal failure or a full disk, 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM,
handled like Ctrl-C: finished stages kept, temp files removed).  `--verbose` adds the traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import signal
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

import click
import torch
from PIL import Image

import inversion.perceptual as perceptual_nets
from align.align import MAX_SIZE, MIN_SIZE, AlignConfig, check_size
from align.record import AlignRecord
from align.stage import list_faces as find_all
from align.stage import run_align
from common.errors import PhotodragError, UsageError
from common.fileio import atomic_path, disk_full_error, is_disk_full, sweep_temps, swept_line
from common.run import RunFolder, locked_run
from common.settings import DEVICE_CHOICES, HOME_ENV, home_dir, resolve_device
from drag.config import DragConfig
from drag.draw import preview_image
from drag.points import map_to_aligned, parse_circle, parse_drag
from drag.presets import PRESETS, parse_presets
from drag.record import DragRecord, stop_line
from drag.stage import run_drag
from inversion.cache import InversionCache, cache_age
from inversion.config import InversionConfig, make_config, option_defaults
from inversion.stage import run_invert
from pipeline.album import EditOptions, LocalExecutor, RayExecutor, run_album
from pipeline.composite import BLENDS, DEFAULT_BLEND, run_composite
from pipeline.edit import run_edit
from pipeline.outputs import check_outputs
from pipeline.recipe import load_recipe, parse_recipe, with_presets
from pipeline.webui.guard import WILDCARDS, served_hosts, split_host
from pipeline.webui.session import Limits, Services, SessionManager
from weights.checkpoint import load_generator, read_checkpoint
from weights.describe import describe_checkpoint
from weights.models import checkpoint_sha256, load_model, resolve_model_path
from weights.networks import to_uint8, z_from_seed
from weights.registry import REGISTRY
from weights.store import WeightStore

FULL, PREVIEW, DRAG, ALIGN = option_defaults("full"), option_defaults("preview"), DragConfig(), AlignConfig()
LIMITS = Limits()  # the web editor's
SHUTDOWN_S = 3  # how long stopping `serve` waits for open requests, and then for running jobs


@dataclass(frozen=True)
class Settings:
    device_name: str
    verbose: bool
    quiet: bool
    home: Path

    @property
    def device(self):
        return resolve_device(self.device_name)

    def store(self):
        return WeightStore(self.home, progress=not self.quiet)

    def cache(self):
        return InversionCache(
            self.home / "cache" / "inversion", warn=lambda msg: click.echo(f"photodrag: warning: {msg}", err=True)
        )

    def info(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)

    def notice(self, msg: str) -> None:
        """A line shown even with --quiet (a wait for another process)."""
        click.echo(f"photodrag: {msg}", err=True)

    @contextlib.contextmanager
    def run_folder(self, run_dir: Path, create: bool = False, output: Optional[Path] = None) -> Iterator[None]:
        """Hold RUN_DIR for a stage command (another process writing it: wait, saying so), after
        sweeping what killed runs left in it (and beside `output`)."""
        with locked_run(run_dir, create=create, notify=self.notice):
            removed = sweep_temps(run_dir)
            if output is not None:
                removed += sweep_temps(output.parent, targets=[output.name])
            if removed:
                self.info(swept_line(removed))
            yield

    def sweep_cache(self, cache: InversionCache) -> None:
        removed = cache.sweep()
        if removed:
            self.info(swept_line(removed, " from the cache"))


@click.group(context_settings=dict(help_option_names=["-h", "--help"], max_content_width=100))
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="Where to run the networks: CUDA when present (auto), or force cpu/cuda.",
)
@click.option(
    "--verbose/--quiet",
    default=None,
    help="--verbose: more detail and tracebacks on errors; --quiet: no progress bars or notes.",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=HOME_ENV,
    help=f"Folder for weights and caches [env {HOME_ENV}; default ~/.cache/photodrag].",
)
@click.version_option(package_name="photodrag")
@click.pass_context
def cli(ctx: click.Context, device: str, verbose: Optional[bool], home: Optional[Path]) -> None:
    """Edit a real face photo by dragging points, DragGAN-style.

    Stages: align (dlib + FFHQ crop) -> invert (PTI) -> drag (DragGAN) -> composite.
    """
    ctx.obj = Settings(device, bool(verbose), verbose is False, home_dir(str(home) if home else None))


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
        click.option(
            "--projection-steps",
            type=click.IntRange(1),
            help=f"Projection steps [default: {FULL['projection_steps']}; preview {PREVIEW['projection_steps']}].",
        ),
        click.option(
            "--tuning-steps",
            type=click.IntRange(0),
            help=f"Pivotal tuning step limit [default: {FULL['tuning_steps']}; preview {PREVIEW['tuning_steps']}].",
        ),
        click.option(
            "--lpips-threshold",
            type=click.FloatRange(0.0),
            help=f"Stop tuning once LPIPS(alex), on the full-resolution images as PTI, falls to this "
            f"[default: {FULL['lpips_threshold']}].",
        ),
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
        click.option(
            "--seed", type=click.IntRange(0), help=f"Seed of the inversion's noise [default: {FULL['seed']}]."
        ),
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


# weights ----------------------------------------------------------------------
@cli.group()
def weights() -> None:
    """List, download, import, verify and inspect the pretrained files."""


@weights.command("list")
@click.pass_obj
def weights_list(s: Settings) -> None:
    """Show every registry entry, whether it is here, and where it comes from."""
    store = s.store()
    click.echo(f"weights folder: {store.dir}")
    for name in REGISTRY:
        st = store.status(name)
        state = "present" if st.present else "missing"
        if st.present and st.unverified:
            state = "UNVERIFIED"
        size = f"{st.entry.size / 2**20:.0f} MiB" if st.entry.size else "?"
        click.echo(f"{name:22s} {state:10s} {st.entry.kind:15s} {size:>8s}  {st.entry.description}")
        origin = st.entry.url or f"pip package {st.entry.package}"
        click.echo(f"{'':22s} file: {st.path}")
        click.echo(f"{'':22s} from: {origin}")
        click.echo(f"{'':22s} licence: {st.entry.licence}; sha256: {st.entry.sha256 or st.sha256 or 'not published'}")


@weights.command("fetch")
@click.argument("name")
@click.option("--url", help="Download from this URL instead of the registry's (a mirror).")
@click.pass_obj
def weights_fetch(s: Settings, name: str, url: Optional[str]) -> None:
    """Download NAME, resuming a partial download, and check its size and hash."""
    path = s.store().fetch(name, url=url)
    click.echo(str(path))


@weights.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--allow-unverified",
    is_flag=True,
    help="Accept a file whose hash differs from the published one (marked UNVERIFIED).",
)
@click.pass_obj
def weights_import(s: Settings, name: str, path: Path, allow_unverified: bool) -> None:
    """Register a file you already have as NAME (loaded and checked first)."""
    dest = s.store().import_file(name, path, allow_unverified=allow_unverified)
    click.echo(str(dest))


@weights.command("verify")
@click.argument("names", nargs=-1)
@click.pass_obj
def weights_verify(s: Settings, names) -> None:
    """Re-hash the files that are here (all, or NAMES), re-check generators; exit 1 on a mismatch."""
    results = s.store().verify(list(names) or None)
    for name, result in results.items():
        click.echo(f"{name:22s} {result}")
    if any(r.startswith(("hash mismatch", "does not fit")) for r in results.values()):
        raise PhotodragError("some files do not match their recorded hash or their entry; fetch or import them again")


@weights.command("inspect")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def weights_inspect(s: Settings, path: Path) -> None:
    """Describe a checkpoint file without running it: layout, config, networks, size, why refused."""
    for label, value in describe_checkpoint(read_checkpoint(path)):
        click.echo(f"{label + ':':24s}{value}")


@weights.command("path")
@click.argument("name")
@click.pass_obj
def weights_path(s: Settings, name: str) -> None:
    """Print where NAME is (or would be) stored."""
    click.echo(str(s.store().path(name)))


# edit -------------------------------------------------------------------------
@cli.command()
@click.argument("photos", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--drag",
    "drags",
    multiple=True,
    metavar="X1,Y1:X2,Y2",
    help="Move the handle point (X1,Y1) to the target (X2,Y2), in photo pixels; repeatable.",
)
@click.option(
    "--preset",
    "presets_",
    multiple=True,
    metavar="NAME=AMOUNT",
    help="An edit by name, e.g. smile=0.5 (see `photodrag presets`); repeatable, mixes with --drag. "
    "Its default mask applies unless --mask or --mask-circle is given.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="The edited photo (a folder when editing several photos); required.",
)
@click.option(
    "--recipe",
    "recipe_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Edit recipe JSON (points, mask, model, stage options); RUN_DIR/recipe.json repeats an edit.",
)
@click.option("--model", help="ffhq-256, ffhq-512 (default), ffhq-1024, or a checkpoint file.")
@click.option("--mask-circle", metavar="X,Y,R", help="Only this circle (photo pixels) may move.")
@click.option(
    "--mask",
    "mask_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Mask image of the region allowed to move (white), the size of the photo.",
)
@click.option("--face", default=None, help="Which face: 'largest' (default) or an index (see align --list-faces).")
@click.option("--steps", type=click.IntRange(1), help=f"Drag step limit (default {DRAG.steps}).")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder (default: $PHOTODRAG_HOME/runs/<photo>-<hash>-<recipe hash>); finished stages are reused. "
    "An existing folder must be empty or a photodrag run folder.",
)
@click.option(
    "--from",
    "from_stage",
    type=click.Choice(["align", "invert", "drag", "composite"]),
    help="Recompute from this stage on, even if later stages look up to date.",
)
@click.option(
    "--jpeg-quality",
    type=click.IntRange(1, 100),
    help="JPEG/WebP quality; default: keep the input JPEG's own quantisation tables.",
)
@click.option(
    "--overwrite-input",
    is_flag=True,
    help="Allow -o to be the input photo (the original is kept in the run folder's input/).",
)
@click.option(
    "--cluster",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where an album (several photos) runs: here, one photo after the other, or on Ray.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Fail at once when another photodrag process is using the run folder (default: wait for it).",
)
@click.option("--address", help="Ray cluster to connect to [env RAY_ADDRESS; default: start a local Ray].")
@click.option("--workers", type=click.IntRange(1), help="Ray workers [default: one per GPU, else per CPU].")
@blend_option(None)
@inversion_options
@click.pass_obj
def edit(
    s: Settings,
    photos,
    drags,
    presets_,
    output: Path,
    recipe_path: Optional[Path],
    model: Optional[str],
    mask_circle: Optional[str],
    mask_path: Optional[Path],
    face: Optional[str],
    steps: Optional[int],
    run_dir: Optional[Path],
    from_stage: Optional[str],
    jpeg_quality: Optional[int],
    overwrite_input: bool,
    no_wait: bool,
    cluster: str,
    address: Optional[str],
    workers: Optional[int],
    blend: Optional[str],
    **inversion,
) -> None:
    """Edit a photo end to end: align, invert (PTI, cached), drag, composite.

    Writes the edited photo at its original size and format; pixels the edit did not change
    are left exactly as they were. Re-editing the same photo skips the inversion.
    """

    if not photos and not recipe_path:
        raise UsageError(
            "no photo given: name the photo to edit, e.g. `photodrag edit PHOTO --preset smile=0.5 -o OUT`"
        )
    if output is None:
        raise UsageError("no output given: add -o OUT, the edited photo to write (a folder for several photos)")
    amounts = parse_presets(presets_)
    if recipe_path:
        recipe = load_recipe(recipe_path)
        if drags:
            raise UsageError("give the points either with --drag or in the recipe, not both")
        if amounts:
            recipe = with_presets(recipe, amounts)
    else:
        if not drags and not amounts:
            raise UsageError("give at least one --drag X1,Y1:X2,Y2 or --preset NAME=AMOUNT (or a --recipe)")
        if not drags and not any(amounts.values()):
            raise UsageError("nothing to drag: every preset amount is 0 and no --drag is given")
        pairs = [parse_drag(d) for d in drags]
        data = {"drags": [{"handle": list(p.handle), "target": list(p.target)} for p in pairs]} if pairs else {}
        recipe = parse_recipe(dict(data, presets=amounts))
    if model:
        recipe = replace(recipe, model=model)
    if mask_circle and mask_path:
        raise UsageError("give either --mask or --mask-circle, not both")
    if mask_circle:
        recipe = replace(recipe, mask_circle=parse_circle(mask_circle), mask_path=None)
    if mask_path:
        recipe = replace(recipe, mask_path=str(mask_path), mask_circle=None)
    if face is not None:
        if face != "largest" and not face.isdigit():
            raise UsageError(f"--face must be 'largest' or a face index, got {face!r}")
        recipe = replace(recipe, face=face if face == "largest" else int(face))
    if steps:
        recipe = replace(recipe, drag=dict(recipe.drag, steps=steps))
    if blend:
        recipe = replace(recipe, blend=blend)
    given = given_inversion_options(inversion)
    if given:
        make_config(**dict(recipe.invert, **given))  # refuse a bad combination before any work
        recipe = replace(recipe, invert=dict(recipe.invert, **given))
    photos = list(photos) or ([Path(recipe.photo)] if recipe.photo else [])
    if not photos:
        raise UsageError('give a PHOTO (or a recipe with a "photo")')
    batch = len(photos) > 1 or cluster == "ray"
    if batch and (run_dir or (output.suffix and not output.is_dir())):
        raise UsageError("with several photos, -o must be a folder and --run-dir cannot be given")
    if not batch and (address or workers):
        raise UsageError("--address and --workers go with --cluster ray")
    pairs = [
        (photo, output / f"{photo.stem}_edited{photo.suffix}" if batch or output.is_dir() else output)
        for photo in photos
    ]
    check_outputs(pairs, others=(recipe_path, recipe.mask_path))
    if batch:
        return _edit_album(s, photos, recipe, output, cluster, address, workers, from_stage, jpeg_quality)
    store, cache = s.store(), s.cache()  # one of each for the batch: the model is hashed once
    for photo, out in pairs:
        s.info(f"editing {photo} -> {out}")
        summary = run_edit(
            photo,
            recipe,
            out,
            home=s.home,
            device=s.device,
            store=store,
            cache=cache,
            run_dir=run_dir,
            from_stage=from_stage,
            jpeg_quality=jpeg_quality,
            progress=not s.quiet,
            log=s.info,
            overwrite_input=overwrite_input,
            inputs=(recipe_path,),
            wait=not no_wait,
            notify=s.notice,
        )
        for w in summary.warnings:
            click.echo(f"photodrag: warning: {w}", err=True)
        for line in summary.lines():
            s.info(line)
        click.echo(str(out))


def _edit_album(
    s: Settings,
    photos,
    recipe,
    out_dir: Path,
    cluster: str,
    address: Optional[str],
    workers: Optional[int],
    from_stage: Optional[str],
    jpeg_quality: Optional[int],
) -> None:
    """Several photos (or --cluster ray): pipeline.album runs them and keeps OUT_DIR/album.json."""
    if cluster == "ray":
        RayExecutor._ray()  # the install hint before any work
        executor = RayExecutor(address=address, workers=workers)
    else:
        if address or workers:
            raise UsageError("--address and --workers go with --cluster ray")
        executor = LocalExecutor()
    options = EditOptions(home=s.home, device=s.device_name, jpeg_quality=jpeg_quality, from_stage=from_stage)

    def report(result) -> None:
        if result.status == "failed":
            click.echo(f"photodrag: {result.photo}: failed: {result.reason}", err=True)
        else:
            click.echo(str(out_dir / result.output))

    summary = run_album(photos, recipe, out_dir, options, executor, progress=not s.quiet, on_result=report)
    s.info(summary.line())
    if summary.failed:
        raise UsageError(f"{summary.failed} of {len(photos)} photos failed (reasons above and in {summary.album_json})")


# align ------------------------------------------------------------------------
@cli.command()
@click.argument("photo", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder; the stage writes RUN_DIR/align/.",
)
@click.option(
    "--size",
    type=int,
    default=ALIGN.size,
    show_default=True,
    help=f"Aligned image size: a power of two from {MIN_SIZE} to {MAX_SIZE} (the generator's resolution).",
)
@click.option(
    "--face",
    default=ALIGN.face,
    show_default=True,
    help="Which face: 'largest' (size x detector score) or an index from --list-faces.",
)
@click.option(
    "--list-faces", is_flag=True, help="Only list the faces found (index, box, score) and write RUN_DIR/faces.png."
)
@click.pass_obj
def align(s: Settings, photo: Path, run_dir: Path, size: int, face: str, list_faces: bool) -> None:
    """Find the face with dlib and crop it the FFHQ way, keeping the exact transform.

    Writes RUN_DIR/align/aligned.png, align.json (landmarks, quad, photo->aligned matrix and
    its inverse) and preview.png (landmarks and crop drawn on the photo).
    """

    if list_faces:
        with s.run_folder(run_dir, create=True):
            faces = find_all(photo, run_dir)
        for i, f in enumerate(faces):
            l, t, r, b = (round(v) for v in f.box)
            click.echo(f"face {i}: box ({l}, {t}, {r}, {b}) size {r - l}x{b - t} score {f.score:.2f}")
        click.echo(str(run_dir / "faces.png"))
        return
    with s.run_folder(run_dir, create=True):
        res = run_align(photo, run_dir, size=check_size(size), face=face)
    for w in res.warnings:
        click.echo(f"photodrag: warning: {w}", err=True)
    l, t, r, b = (round(v) for v in res.face.box)
    s.info(f"face {res.face_index} of {len(res.faces)}: box ({l}, {t}, {r}, {b}) -> {res.size}x{res.size}")
    click.echo(str(run_dir / "align"))


# invert -----------------------------------------------------------------------
@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--model",
    default=None,
    help="ffhq-256, ffhq-512, ffhq-1024 (fetched on first use) or a checkpoint file; "
    "default: the registry generator of the aligned image's size.",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the inversion cache.")
@click.option("--fp16-cache", is_flag=True, help="Store the tuned weights as fp16 (half the size).")
@inversion_options
@click.pass_obj
def invert(s: Settings, run_dir: Path, model: Optional[str], no_cache: bool, fp16_cache: bool, **inversion) -> None:
    """PTI: project the aligned face into W, then tune the generator around that pivot.

    Reads RUN_DIR/align/, writes RUN_DIR/invert/ (pivot, tuned generator, invert.json with
    LPIPS/MSE before and after tuning, reconstruction.png, compare.png). Results are cached
    by content: inverting the same aligned face with the same model and options again is instant.
    """

    config = make_config(**given_inversion_options(inversion))  # bad options fail before any loading
    size = AlignRecord.load(run_dir).size
    model = model or f"ffhq-{size}"
    store = s.store()
    G, path = load_model(model, store, s.device)
    cache = None if no_cache else s.cache()
    with s.run_folder(run_dir), cache.pinned() if cache else contextlib.nullcontext():
        if cache is not None:
            s.sweep_cache(cache)
        res = run_invert(
            run_dir,
            G,
            model,
            checkpoint_sha256(path),
            config,
            perceptual=lambda net, r: perceptual_nets.load_perceptual(net, store, r).to(s.device),
            cache=cache,
            store_fp16=fp16_cache,
            progress=not s.quiet,
        )
    m = res.metrics
    for w in res.warnings:
        click.echo(f"photodrag: warning: {w}", err=True)
    if config.profile != "full":
        s.info(
            f"{config.profile} profile: {config.projection.steps} projection steps, up to "
            f"{config.tuning.steps} tuning steps (drop --preview for the full PTI schedule)"
        )
    if res.cache_hit:
        s.info(f"cache hit {res.cache_key[:12]}: projection and tuning skipped")
    s.info(
        f"projection LPIPS {m['projection']['lpips']:.4f} MSE {m['projection']['mse']:.5f} -> "
        f"PTI LPIPS {m['tuning']['lpips']:.4f} MSE {m['tuning']['mse']:.5f}"
    )
    if res.identity and res.identity.get("distance") is not None:
        s.info(
            f"identity distance photo vs reconstruction: {res.identity['distance']:.3f} "
            f"(below {res.identity['threshold']} = same person)"
        )
    click.echo(str(run_dir / "invert"))


# drag -------------------------------------------------------------------------
@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--drag",
    "drags",
    multiple=True,
    metavar="X1,Y1:X2,Y2",
    help="Move the handle point (X1,Y1) to the target (X2,Y2); repeat for several points.",
)
@click.option(
    "--preset",
    "presets_",
    multiple=True,
    metavar="NAME=AMOUNT",
    help="An edit by name, e.g. smile=0.5 (see `photodrag presets`); repeatable, mixes with --drag. "
    "Its default mask applies unless --mask or --mask-circle is given.",
)
@click.option(
    "--coords",
    type=click.Choice(["photo", "aligned"]),
    default="photo",
    show_default=True,
    help="Whether points (and masks) are in the original photo's pixels or the aligned crop's.",
)
@click.option(
    "--mask",
    "mask_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image of the region allowed to move (white), the size of the photo or the crop.",
)
@click.option("--mask-circle", metavar="X,Y,R", help="Movable region as a circle instead of a mask image.")
@click.option("--steps", type=click.IntRange(1), default=DRAG.steps, show_default=True, help="Step limit.")
@click.option("--lr", type=float, default=DRAG.lr, show_default=True, help="Adam learning rate on w[:, :6].")
@click.option(
    "--lambda-mask",
    type=float,
    default=DRAG.lambda_mask,
    show_default=True,
    help="Weight of keeping features outside the mask unchanged.",
)
@click.option("--r1", type=float, default=DRAG.r1, show_default=True, help="Motion supervision radius at 512 px.")
@click.option("--r2", type=float, default=DRAG.r2, show_default=True, help="Point tracking radius at 512 px.")
@click.option(
    "--animate",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an animation of the steps: steps.gif or steps.mp4 (a bare name goes in RUN_DIR/drag/).",
)
@click.pass_obj
def drag(
    s: Settings,
    run_dir: Path,
    drags,
    presets_,
    coords: str,
    mask_path: Optional[Path],
    mask_circle: Optional[str],
    steps: int,
    lr: float,
    lambda_mask: float,
    r1: float,
    r2: float,
    animate: Optional[Path],
) -> None:
    """DragGAN: move handle points to targets on the inverted face.

    Reads RUN_DIR/invert/, writes RUN_DIR/drag/ (edited.png, w_edited.safetensors, drag.json with
    the final positions and distances in aligned and photo pixels, preview.png with arrows).
    """

    if mask_path and mask_circle:
        raise UsageError("give either --mask or --mask-circle, not both")
    if animate and animate.suffix.lower() not in (".gif", ".mp4"):
        raise UsageError("--animate needs a .gif or .mp4 file name")
    amounts = parse_presets(presets_)
    if not drags and not amounts:
        raise UsageError("give at least one --drag X1,Y1:X2,Y2 or --preset NAME=AMOUNT")
    pairs = [parse_drag(d) for d in drags]
    align = AlignRecord.load(run_dir)
    if amounts and not align.has_landmarks:
        raise UsageError(f"{run_dir}/align/align.json has no landmarks: re-run `photodrag align`")
    pts, mask = map_to_aligned(
        pairs,
        coords,
        align.matrix,
        align.size,
        align.photo_size,
        parse_circle(mask_circle) if mask_circle else None,
        mask_path,
        presets=amounts,
        landmarks=align.aligned_landmarks if amounts else None,
    )
    config = DragConfig(steps=steps, lr=lr, lambda_mask=lambda_mask, r1=r1, r2=r2)
    with s.run_folder(run_dir):
        state = run_drag(
            run_dir, pts, mask, config, device=s.device, animate=animate, progress=not s.quiet, presets=amounts
        )
    record = DragRecord.load(run_dir)
    for w in record.warnings():
        click.echo(f"photodrag: warning: {w}", err=True)
    for line in record.preset_table():
        s.info(line)
    s.info(
        f"{stop_line(state.reason, state.step)}; distance to target: "
        + ", ".join(f"{d:.1f}" for d in state.distances)
        + " px (aligned)"
    )
    click.echo(str(run_dir / "drag"))


# presets ----------------------------------------------------------------------
@cli.command()
@click.option(
    "--preview",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Draw the drags and mask of the given --preset values on RUN_DIR/align/aligned.png.",
)
@click.option(
    "--preset",
    "presets_",
    multiple=True,
    metavar="NAME=AMOUNT",
    help="A preset and its amount (repeatable), e.g. smile=0.5; needs --preview.",
)
def presets(run_dir: Optional[Path], presets_) -> None:
    """Edits by name: list the presets, or preview their drags on a run folder (nothing is dragged).

    With --preview, writes RUN_DIR/presets_preview.png: the aligned face, the default mask tinted
    green, arrows from each handle (red) to its target (blue).
    """
    amounts = parse_presets(presets_)
    if run_dir is None:
        if amounts:
            raise UsageError(
                "--preset needs --preview RUN_DIR here; to edit, use "
                "`photodrag edit PHOTO --preset NAME=AMOUNT` or `photodrag drag RUN_DIR --preset ...`"
            )
        for p in PRESETS.values():
            marks = ",".join(map(str, p.landmarks))
            click.echo(
                f"{p.name:11s} {p.description}; landmarks {marks}; "
                f"up to {p.unit:.2f} IOD per unit amount, {p.amount_range[0]:g}..{p.amount_range[1]:g}"
            )
        return
    if not amounts:
        raise UsageError("--preview needs at least one --preset NAME=AMOUNT")
    record = AlignRecord.load(run_dir)
    if not record.has_landmarks:
        raise UsageError(f"{run_dir}/align/align.json has no landmarks: re-run `photodrag align`")
    img = preview_image(RunFolder(run_dir).read_image("align", "aligned.png"), record.aligned_landmarks, amounts)
    out = run_dir / "presets_preview.png"
    with locked_run(run_dir, create=False, notify=lambda m: click.echo(f"photodrag: {m}", err=True)):
        with atomic_path(out) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    click.echo(str(out))


# composite --------------------------------------------------------------------
@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The edited photo (same size; the format follows the extension, else the input's).",
)
@click.option(
    "--jpeg-quality",
    type=click.IntRange(1, 100),
    help="JPEG/WebP quality; default: keep the input JPEG's own quantisation tables.",
)
@blend_option(DEFAULT_BLEND)
@click.pass_obj
def composite(s: Settings, run_dir: Path, output: Path, jpeg_quality: Optional[int], blend: str) -> None:
    """Put the edit back into the original photo (the photo's own pixels moved, by default).

    Pixels outside the changed region are the input's own; writes OUTPUT and RUN_DIR/composite/
    (composite.json, blend_mask.png, changed.png, compare.png).
    """
    with s.run_folder(run_dir, output=output):
        record = run_composite(run_dir, output, jpeg_quality, blend=blend)
    s.info(record.describe())
    if record.identity_distance is not None:
        s.info(f"identity distance, photo vs output photo: {record.identity_distance:.3f}")
    click.echo(str(output))


# serve ------------------------------------------------------------------------
def _check_hosts(ctx, param, values: tuple) -> tuple:
    """--allow-host values: host names or HOST:PORT (pipeline.webui.guard.split_host)."""
    for v in values:
        if split_host(v) is None:
            raise click.BadParameter(f"{v!r} is not a host name or HOST:PORT", param_hint="'--allow-host'")
    return values


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback by default: only this computer can connect).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    callback=_check_hosts,
    help="Also answer requests that name HOST in their Host and Origin headers (a reverse proxy's "
    "name; without :PORT any port). Repeatable. Any other Host or Origin gets a 403.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(1),
    default=LIMITS.max_sessions,
    show_default=True,
    help="Photos held at once; a new upload evicts the longest-unattended session or gets a 503.",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(1.0),
    default=LIMITS.max_pixels / 1e6,
    show_default=True,
    help="Total size of the photos held at once (about 5 MiB of memory per megapixel).",
)
@click.option(
    "--idle-minutes",
    type=click.FloatRange(0.0, min_open=True),
    default=LIMITS.idle_drop_s / 60,
    show_default=True,
    help="Drop a session whose page has not polled for this long (a closed tab's job stops within seconds).",
)
@click.option(
    "--model",
    default="ffhq-512",
    show_default=True,
    help="ffhq-256, ffhq-512, ffhq-1024 (fetched on first use) or a checkpoint file.",
)
@inversion_options
@click.option(
    "--lr",
    type=click.FloatRange(0.0, min_open=True),
    default=DRAG.lr,
    show_default=True,
    help="Drag: Adam learning rate on w[:, :6].",
)
@click.option(
    "--lambda-mask",
    type=click.FloatRange(0.0),
    default=DRAG.lambda_mask,
    show_default=True,
    help="Drag: weight of keeping features outside the painted mask unchanged.",
)
@click.option(
    "--r1",
    type=click.FloatRange(0.0, min_open=True),
    default=DRAG.r1,
    show_default=True,
    help="Drag: motion supervision radius at 512 px.",
)
@click.option(
    "--r2",
    type=click.FloatRange(0.0, min_open=True),
    default=DRAG.r2,
    show_default=True,
    help="Drag: point tracking radius at 512 px.",
)
@blend_option(DEFAULT_BLEND)
@click.pass_obj
def serve(
    s: Settings,
    host: str,
    port: int,
    allow_hosts: tuple,
    max_sessions: int,
    max_megapixels: float,
    idle_minutes: float,
    model: str,
    lr: float,
    lambda_mask: float,
    r1: float,
    r2: float,
    blend: str,
    **inversion,
) -> None:
    """Local web editor: upload a photo, pick the face, click points, watch the drag.

    The inversion and drag options apply to every session (the page sets the step limit).
    Only requests naming the served address (or an --allow-host name) in Host and Origin are
    answered. Stopping it (Ctrl-C, SIGTERM) waits at most a few seconds for open requests.
    Needs the optional extra: pip install -e '.[ui]'.
    """
    try:
        import uvicorn

        from pipeline.webui.app import create_app, server_log_config
    except ImportError:
        raise UsageError("the web editor needs its extra: pip install -e '.[ui]'") from None
    limits = replace(
        LIMITS, max_sessions=max_sessions, max_pixels=int(max_megapixels * 1e6), idle_drop_s=idle_minutes * 60
    )
    s.sweep_cache(s.cache())
    manager = build_manager(
        s,
        model,
        inversion_config=make_config(**given_inversion_options(inversion)),
        drag_config=DragConfig(lr=lr, lambda_mask=lambda_mask, r1=r1, r2=r2),
        limits=limits,
        blend=blend,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"photodrag: warning: listening on {host}: anyone who can reach it can use the editor", err=True)
    if host in WILDCARDS and not allow_hosts:
        click.echo(
            f"photodrag: warning: only requests to {', '.join(served_hosts(host, port))} are answered; "
            "name this computer's address with --allow-host",
            err=True,
        )
    click.echo(f"photodrag editor on http://{host}:{port}/ (Ctrl-C to stop)")
    app = create_app(manager, allowed_hosts=[*served_hosts(host, port), *allow_hosts], close_timeout_s=SHUTDOWN_S)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=server_log_config(uvicorn.config.LOGGING_CONFIG),
        timeout_graceful_shutdown=SHUTDOWN_S,
    )


def build_manager(
    s: Settings,
    model: str,
    perceptual=None,
    inversion_config=None,
    drag_config=None,
    limits: Limits = LIMITS,
    blend: str = DEFAULT_BLEND,
):
    """Sessions sharing one model, the LPIPS networks and the inversion cache (checked up front)."""

    store = s.store()
    path = resolve_model_path(model, store)
    config = inversion_config or InversionConfig()
    if perceptual is None:
        nets = {
            (net, r): perceptual_nets.load_perceptual(net, store, r).to(s.device) for net, r in config.perceptual_nets()
        }
        perceptual = lambda net, r: nets[(net, r)]
    G = load_generator(path, s.device)  # loaded here, before the server's threads, and shared by every session
    services = Services(
        model_name=model,
        model_path=path,
        model_sha256=checkpoint_sha256(path),
        resolution=G.img_resolution,
        device=s.device,
        cache=s.cache(),
        perceptual=perceptual,
        inversion_config=config,
        drag_config=drag_config,
        blend=blend,
        _G=G,
    )
    return SessionManager(s.home / "ui", services, limits)


# cache ------------------------------------------------------------------------
@cli.group()
def cache() -> None:
    """Inspect and clean the inversion cache (pivot + tuned generator per face, model and options)."""


def _fmt_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@cache.command("ls")
@click.pass_obj
def cache_ls(s: Settings) -> None:
    """List entries, most recently used first."""
    c = s.cache()
    for e in c.entries():
        used = datetime.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        lp = e.meta.get("metrics", {}).get("tuning", {}).get("lpips", "?")
        who = f"{e.meta.get('photo', '?')}  {Path(str(e.meta.get('model', '?'))).name}  {cache_age(e.meta)}"
        click.echo(f"{e.key[:16]}  {_fmt_size(e.size):>10s}  {who}  used {used}  LPIPS {lp}")
    click.echo(
        f"{len(c.entries())} entries, {_fmt_size(c.total_size())} (limit {_fmt_size(c.limit_bytes)}) in {c.root}"
    )


@cache.command("info")
@click.argument("key")
@click.pass_obj
def cache_info(s: Settings, key: str) -> None:
    """Show an entry's metadata (KEY may be a unique prefix)."""
    e = s.cache().find(key)
    click.echo(json.dumps(dict(e.meta, path=str(e.path), size=e.size), indent=2, sort_keys=True))


@cache.command("rm")
@click.argument("key")
@click.pass_obj
def cache_rm(s: Settings, key: str) -> None:
    """Remove one entry (KEY may be a unique prefix); one in use by a running edit is waited for."""
    c = s.cache()
    e = c.find(key)
    c.remove(e.key, notify=s.notice)
    click.echo(f"removed {e.key[:16]}")


@cache.command("clear")
@click.pass_obj
def cache_clear(s: Settings) -> None:
    """Remove every entry not in use by a running edit, and what killed runs left."""
    c = s.cache()
    s.sweep_cache(c)
    removed, busy = c.clear()
    kept = f"; kept {busy} in use by running edits" if busy else ""
    click.echo(f"removed {removed} entries{kept}")


@cache.command("du")
@click.pass_obj
def cache_du(s: Settings) -> None:
    """Size of everything under the cache folder (after sweeping what killed runs left) and its limit."""
    c = s.cache()
    s.sweep_cache(c)
    total, entries = c.disk_usage(), c.entries()
    other = total - sum(e.size for e in entries)
    rest = f" + {_fmt_size(other)} of other files (writes in progress)" if other else ""
    click.echo(
        f"{_fmt_size(total)}: {len(entries)} entries{rest}; limit {_fmt_size(c.limit_bytes)} "
        f"(set PHOTODRAG_CACHE_LIMIT_GB); {c.root}"
    )


# generate ---------------------------------------------------------------------
@cli.command()
@click.option(
    "--model",
    default="ffhq-256",
    show_default=True,
    help="Generator: ffhq-256, ffhq-512, ffhq-1024 (fetched on first use), or a .pkl/.pt/.safetensors file.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; z = RandomState(seed).randn(1, z_dim).")
@click.option("--trunc", "psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG (.png)."
)
@click.pass_obj
def generate(s: Settings, model: str, seed: int, psi: float, noise_mode: str, output: Path) -> None:
    """Sample one image from a generator: the quickest check that a checkpoint works.

    Same checkpoint, seed and options give the same picture as NVIDIA's generate.py.
    """

    if seed < 0 or seed >= 2**32:
        raise UsageError("--seed must be in [0, 2**32)")
    if not math.isfinite(psi):
        raise UsageError(f"--trunc must be a finite number, not {psi}")
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: generate writes PNG; name the file .png")
    device = s.device
    G, path = load_model(model, s.store(), device)
    s.info(f"loaded {path} ({G.img_resolution}px) on {device}")
    with torch.no_grad():
        img = G(z_from_seed(seed, G.z_dim).to(device), truncation_psi=psi, noise_mode=noise_mode)
    with atomic_path(output) as tmp:
        Image.fromarray(to_uint8(img)[0]).save(tmp, format="PNG")
    click.echo(str(output))


# entry point ------------------------------------------------------------------
def click_message(exc: click.ClickException) -> str:
    """One line for a click error, naming the command's --help when it is a usage error."""
    msg = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        msg = msg.rstrip(".") + f"; see `{ctx.command_path} --help`"
    return msg


class Terminated(BaseException):
    """SIGTERM (sent by `timeout`, systemd, `docker stop`), raised in the main thread like Ctrl-C's
    KeyboardInterrupt, so every `finally` runs: temp files are removed, finished stages stay."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not interrupt the clean-up
    raise Terminated()


@contextlib.contextmanager
def _sigterm_handled() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the command runs (the previous handler comes back after)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _disk_full_message(exc: BaseException) -> str:
    path = getattr(exc, "filename", None)
    if path:
        return str(disk_full_error(path))
    return f"no space left on device ({' '.join(str(exc).split())}); free some space and run again"


def main(argv=None) -> None:
    """Run the CLI with one-line errors and fixed exit codes."""
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    with _sigterm_handled():
        _main(argv, verbose)


def _main(argv, verbose: bool) -> None:
    try:
        cli.main(args=argv, prog_name="photodrag", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare command group: show its help as help
        click.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.ClickException as exc:  # click's own usage errors, in the tool's one-line style
        click.echo(f"photodrag: error: {click_message(exc)}", err=True)
        sys.exit(2)
    except (click.Abort, KeyboardInterrupt):
        click.echo("photodrag: interrupted; finished files are kept, unfinished ones were discarded", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("photodrag: terminated (SIGTERM); finished files are kept, unfinished ones were discarded", err=True)
        sys.exit(143)
    except PhotodragError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"photodrag: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything else is our bug, or a full disk
        if verbose:
            traceback.print_exc()
        if is_disk_full(exc):
            click.echo(f"photodrag: error: {_disk_full_message(exc)}", err=True)
            sys.exit(1)
        click.echo(f"photodrag: internal error: {type(exc).__name__}: {exc} (run with --verbose for details)", err=True)
        sys.exit(1)
    sys.exit(0)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the proof [HOME/doctor].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
@click.pass_obj
def doctor(s: Settings, out: Optional[Path], as_json: bool) -> None:
    """Check the install, then run every stage on random weights (nothing is read from the weights folder)."""
    from pipeline.doctor import diagnose, format_report

    report = diagnose(s.home, s.device, out or s.home / "doctor", progress=not (s.quiet or as_json))
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
