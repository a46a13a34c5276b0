"""photodrag command line: edit a face photo by dragging points (DragGAN on a PTI inversion).

Each command parses its flags, calls one function (a stage's or pipeline/'s) and prints what it wrote;
errors are one line with fixed exit codes (pipeline/exits.py)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Optional

import click

from align.align import check_size
from align.stage import list_faces as find_all
from align.stage import run_align
from common.errors import PhotodragError, UsageError
from common.settings import DEVICE_CHOICES, HOME_ENV, home_dir
from drag.config import DragConfig
from drag.presets import parse_presets
from drag.record import DragRecord
from inversion.config import make_config
from inversion.record import InversionRecord
from pipeline.album import EditOptions
from pipeline.batch import edit_album
from pipeline.composite import run_composite
from pipeline.console import Settings, warn_all
from pipeline.doctor import diagnose, format_report
from pipeline.dragging import drag_run_folder, prepare_drag
from pipeline.edit import run_edit
from pipeline.exits import run_cli
from pipeline.flags import (
    LIMITS,
    align_flags,
    composite_flags,
    doctor_flags,
    drag_flags,
    edit_flags,
    generate_flags,
    given_inversion_options,
    invert_flags,
    presets_flags,
    seed_flags,
    serve_flags,
    weights_import_flags,
)
from pipeline.inverting import invert_run_folder
from pipeline.models import LpipsLoader
from pipeline.outputs import check_outputs
from pipeline.pictures import check_sample, write_presets_preview, write_sample
from pipeline.plan import check_given, plan_outputs, recipe_from_flags
from pipeline.report import (
    align_line,
    cache_du_line,
    cache_lines,
    drag_lines,
    face_lines,
    invert_lines,
    preset_lines,
    weights_lines,
)
from pipeline.seeded import refuse_composite, replay_seed_recipe, seed_line, start_from_seed
from pipeline.webui.guard import served_hosts
from pipeline.webui.serving import build_manager, host_warnings, serve_limits
from weights.checkpoint import read_checkpoint
from weights.describe import describe_checkpoint
from weights.download import Opener
from weights.models import load_model

SHUTDOWN_S = 3  # how long stopping `serve` waits for open requests, and then for running jobs


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
    given = ctx.obj or {}  # main's `lpips` and `opener`, passed down by click
    ctx.obj = Settings(device, bool(verbose), verbose is False, home_dir(str(home) if home else None), **given)


# weights ----------------------------------------------------------------------
@cli.group()
def weights() -> None:
    """List, download, import, verify and inspect the pretrained files."""


@weights.command("list")
@click.pass_obj
def weights_list(s: Settings) -> None:
    """Show every registry entry, whether it is here, and where it comes from."""
    for line in weights_lines(s.store()):
        click.echo(line)


@weights.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--url", help="Download from this URL instead of the registry's (a mirror; one NAME only).")
@click.pass_obj
def weights_fetch(s: Settings, names: tuple, url: Optional[str]) -> None:
    """Download each NAME, resuming a partial download, and check its size and hash."""
    if url and len(names) > 1:
        raise UsageError("--url names one file's mirror: give one NAME with it")
    store = s.store()
    for name in names:
        click.echo(str(store.fetch(name, url=url)))


@weights.command("import")
@weights_import_flags
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
@edit_flags
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
    min_face: Optional[int],
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
    check_given(photos, recipe_path, output)
    recipe = recipe_from_flags(
        recipe_path,
        drags,
        parse_presets(presets_),
        model=model,
        mask_circle=mask_circle,
        mask_path=mask_path,
        face=face,
        min_face=min_face,
        steps=steps,
        blend=blend,
        invert=given_inversion_options(inversion),
        others=dict(from_stage=from_stage, jpeg_quality=jpeg_quality, overwrite_input=overwrite_input, cluster=cluster)
        | dict(address=address, workers=workers),
    )
    if recipe.seed is not None:
        return _edit_seed(s, photos, recipe, output, recipe_path, run_dir, not no_wait)
    photos, batch, pairs = plan_outputs(
        photos, recipe, output, cluster=cluster, run_dir=run_dir, ray_options=bool(address or workers)
    )
    check_outputs(pairs, others=(recipe_path, recipe.mask_path))
    if batch:
        return _edit_album(s, photos, recipe, output, cluster, address, workers, from_stage, jpeg_quality)
    _edit_photos(s, pairs, recipe, recipe_path, run_dir, from_stage, jpeg_quality, overwrite_input, not no_wait)


def _edit_seed(s: Settings, photos, recipe, output: Path, recipe_path: Optional[Path], run_dir, wait: bool) -> None:
    """A seed recipe (a seed run's RUN/recipe.json): the same start and drag again, the picture to OUTPUT."""
    if photos:
        raise UsageError("the recipe starts from a seed, not a photo: give no PHOTO with it")
    run = replay_seed_recipe(
        recipe,
        output,
        home=s.home,
        store=s.store(),
        device=s.device,
        run_dir=run_dir,
        progress=not s.quiet,
        notify=s.notice,
        loaded=s.models(),
        inputs=(recipe_path,),
        wait=wait,
    )
    s.info(f"replayed {InversionRecord.load(run).start_line()} and its drag in {run}")
    click.echo(str(output))


def _edit_photos(
    s: Settings,
    pairs,
    recipe,
    recipe_path: Optional[Path],
    run_dir: Optional[Path],
    from_stage: Optional[str],
    jpeg_quality: Optional[int],
    overwrite_input: bool,
    wait: bool,
) -> None:
    """One photo (or a few, one after the other) edited here: pipeline.edit.run_edit, then its lines."""
    store, cache, models = s.store(), s.cache(), s.models()  # one of each for the batch: loaded, hashed once
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
            wait=wait,
            notify=s.notice,
            models=models,
        )
        warn_all(summary.warnings)
        for line in summary.lines():
            s.info(line)
        click.echo(str(out))


def _edit_album(s: Settings, photos, recipe, out_dir: Path, cluster: str, address, workers, from_stage, jpeg_quality):
    """Several photos (or --cluster ray): pipeline.batch runs them and keeps OUT_DIR/album.json."""
    options = EditOptions(home=s.home, device=s.device_name, jpeg_quality=jpeg_quality, from_stage=from_stage)

    def report(result) -> None:
        if result.status == "failed":
            click.echo(f"photodrag: {result.photo}: failed: {result.reason}", err=True)
        else:
            click.echo(str(out_dir / result.output))

    kw = dict(store=s.store(), lpips=s.lpips, cluster=cluster, address=address, workers=workers)
    summary = edit_album(photos, recipe, out_dir, options, progress=not s.quiet, on_result=report, **kw)
    s.info(summary.line())
    if summary.failed:
        raise UsageError(f"{summary.failed} of {len(photos)} photos failed (reasons above and in {summary.album_json})")


# align ------------------------------------------------------------------------
@cli.command()
@align_flags
@click.pass_obj
def align(s: Settings, photo: Path, run_dir: Path, size: int, face: str, list_faces: bool) -> None:
    """Find the face with dlib and crop it the FFHQ way, keeping the exact transform.

    Writes RUN_DIR/align/aligned.png, align.json (landmarks, quad, photo->aligned matrix and
    its inverse) and preview.png (landmarks and crop drawn on the photo).
    """
    if list_faces:
        with s.run_folder(run_dir, create=True):
            faces = find_all(photo, run_dir)
        for line in face_lines(faces):
            click.echo(line)
        click.echo(str(run_dir / "faces.png"))
        return
    with s.run_folder(run_dir, create=True):
        res = run_align(photo, run_dir, size=check_size(size), face=face)
    warn_all(res.warnings)
    s.info(align_line(res))
    click.echo(str(run_dir / "align"))


# invert -----------------------------------------------------------------------
@cli.command()
@invert_flags
@click.pass_obj
def invert(s: Settings, run_dir: Path, model: Optional[str], no_cache: bool, fp16_cache: bool, **inversion) -> None:
    """PTI: project the aligned face into W, then tune the generator around that pivot.

    Reads RUN_DIR/align/, writes RUN_DIR/invert/ (pivot, tuned generator, invert.json with
    LPIPS/MSE before and after tuning, reconstruction.png, compare.png). Results are cached
    by content: inverting the same aligned face with the same model and options again is instant.
    """
    config = make_config(**given_inversion_options(inversion))  # bad options fail before any loading
    cache = None if no_cache else s.cache()
    with s.run_folder(run_dir), cache.pinned() if cache else contextlib.nullcontext():
        if cache is not None:
            s.sweep_cache(cache)
        kw = dict(store=s.store(), device=s.device, loaded=s.models(), cache=cache, progress=not s.quiet)
        res = invert_run_folder(run_dir, config, model=model, store_fp16=fp16_cache, **kw)
    warn_all(res.warnings)
    for line in invert_lines(res, config):
        s.info(line)
    click.echo(str(run_dir / "invert"))


# drag -------------------------------------------------------------------------
@cli.command()
@drag_flags
@click.pass_obj
def drag(
    s: Settings,
    run_dir: Path,
    drags,
    presets_,
    coords: str,
    mask_path: Optional[Path],
    mask_circle: Optional[str],
    animate: Optional[Path],
    **tuning,
) -> None:
    """DragGAN: move handle points to targets on the inverted face.

    Reads RUN_DIR/invert/, writes RUN_DIR/drag/ (edited.png, w_edited.safetensors, drag.json with
    the final positions and distances in aligned and photo pixels, preview.png with arrows).
    """
    config = DragConfig(**tuning)  # steps, lr, lambda_mask, r1, r2: ranges checked there
    amounts = parse_presets(presets_)
    request = prepare_drag(run_dir, drags, amounts, mask_path, mask_circle, animate)  # before the lock
    with s.run_folder(run_dir):
        state = drag_run_folder(
            run_dir, request, config, coords=coords, device=s.device, progress=not s.quiet, animate=animate
        )
    record = DragRecord.load(run_dir)
    warn_all(record.warnings())
    for line in drag_lines(record, state):
        s.info(line)
    click.echo(str(run_dir / "drag"))


# presets ----------------------------------------------------------------------
@cli.command()
@presets_flags
def presets(run_dir: Optional[Path], presets_) -> None:
    """Edits by name: list the presets, or preview their drags on a run folder (nothing is dragged).

    With --preview, writes RUN_DIR/presets_preview.png: the aligned face (a seed run: the generated
    face), the default mask tinted green, arrows from each handle (red) to its target (blue).
    """
    amounts = parse_presets(presets_)
    if run_dir is None:
        if amounts:
            raise UsageError(
                "--preset needs --preview RUN_DIR here; to edit, use "
                "`photodrag edit PHOTO --preset NAME=AMOUNT` or `photodrag drag RUN_DIR --preset ...`"
            )
        for line in preset_lines():
            click.echo(line)
        return
    if not amounts:
        raise UsageError("--preview needs at least one --preset NAME=AMOUNT")
    click.echo(str(write_presets_preview(run_dir, amounts, notify=lambda m: click.echo(f"photodrag: {m}", err=True))))


# composite --------------------------------------------------------------------
@cli.command()
@composite_flags
@click.pass_obj
def composite(s: Settings, run_dir: Path, output: Path, jpeg_quality: Optional[int], blend: str) -> None:
    """Put the edit back into the original photo (the photo's own pixels moved, by default).

    Pixels outside the changed region are the input's own; writes OUTPUT and RUN_DIR/composite/
    (composite.json, blend_mask.png, changed.png, compare.png).
    """
    refuse_composite(run_dir)
    with s.run_folder(run_dir, output=output):
        record = run_composite(run_dir, output, jpeg_quality, blend=blend)
    s.info(record.describe())
    if record.identity_distance is not None:
        s.info(f"identity distance, photo vs output photo: {record.identity_distance:.3f}")
    click.echo(str(output))


# serve ------------------------------------------------------------------------
@cli.command()
@serve_flags
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
    blend: str,
    **options,
) -> None:
    """Local web editor: upload a photo, pick the face, click points, watch the drag.

    Each face of a photo keeps its edit when another is picked; the download carries them all.
    Or start from a seed of the served model or of any registry generator in the weights store,
    dragged in W+ or W (DragGAN's workflow; downloads: PNG, latent, recipe).
    The inversion and drag options apply to every session (the page sets the step limit).
    Only requests naming the served address (or an --allow-host name) in Host and Origin are
    answered. Stopping it (Ctrl-C, SIGTERM) waits at most a few seconds for open requests.
    Needs the optional extra: pip install -e '.[ui]'.
    """
    try:
        from pipeline.webui.app import create_app, run_server
    except ImportError:
        raise UsageError("the web editor needs its extra: pip install -e '.[ui]'") from None
    limits = serve_limits(LIMITS, max_sessions, max_megapixels, idle_minutes)
    s.sweep_cache(s.cache())
    manager = build_manager(
        s.home,
        s.device,
        s.store(),
        s.cache(),
        model,
        s.models(),
        inversion_config=make_config(**given_inversion_options(options)),
        drag_config=DragConfig(**options),  # what is left: lr, lambda_mask, r1, r2
        limits=limits,
        blend=blend,
    )
    warn_all(host_warnings(host, port, allow_hosts))
    click.echo(f"photodrag editor on http://{host}:{port}/ (Ctrl-C to stop)")
    app = create_app(manager, allowed_hosts=[*served_hosts(host, port), *allow_hosts], close_timeout_s=SHUTDOWN_S)
    run_server(app, host, port, SHUTDOWN_S)


# cache ------------------------------------------------------------------------
@cli.group()
def cache() -> None:
    """Inspect and clean the inversion cache (pivot + tuned generator per face, model and options)."""


@cache.command("ls")
@click.pass_obj
def cache_ls(s: Settings) -> None:
    """List entries, most recently used first."""
    for line in cache_lines(s.cache()):
        click.echo(line)


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
    click.echo(cache_du_line(c))


# generate ---------------------------------------------------------------------
@cli.command()
@generate_flags
@click.pass_obj
def generate(s: Settings, model: str, seed: int, psi: float, noise_mode: str, output: Path) -> None:
    """Sample one image from a generator: the quickest check that a checkpoint works.

    Same checkpoint, seed and options give the same picture as NVIDIA's generate.py.
    """
    check_sample(seed, psi, output)
    G, path = load_model(model, s.store(), s.device)
    s.info(f"loaded {path} ({G.img_resolution}px) on {s.device}")
    write_sample(G, seed, psi, noise_mode, output, s.device)
    click.echo(str(output))


# seed -------------------------------------------------------------------------
@cli.command()
@seed_flags
@click.pass_obj
def seed(s: Settings, model: str, seed: int, psi: float, run_dir: Path) -> None:
    """DragGAN's own start: a run folder whose inversion is a generated latent, ready for `drag`.

    w = mapping(z, psi) in W+ with z = RandomState(seed).randn(1, z_dim), as NVIDIA's generate.py;
    writes RUN_DIR/invert/ (pivot.safetensors, reconstruction.png = the picture, invert.json with
    where the run began). `drag` works on it unchanged and leaves RUN_DIR/recipe.json, which
    `edit --recipe` replays byte for byte; there is no photo, so no composite.
    """
    with s.run_folder(run_dir, create=True):
        record = start_from_seed(run_dir, model, seed, psi, store=s.store(), device=s.device, loaded=s.models())
    s.info(seed_line(record))
    click.echo(str(run_dir / "invert"))


# entry point ------------------------------------------------------------------
def main(argv=None, lpips: Optional[LpipsLoader] = None, opener: Optional[Opener] = None) -> None:
    """Run the CLI with one-line errors and fixed exit codes (pipeline.exits); `lpips` builds the
    LPIPS nets (None: from the weights store; tests pass random backbones); `opener` makes the
    downloads' requests (None: the network; tests pass one that has none)."""
    # MKL picks GEMM code paths by memory alignment, so two identical runs could differ in the last
    # bit (seen: a projection's pivot 6e-8 apart) and drift over hundreds of steps; its conditional
    # numerical reproducibility mode makes a run repeat. Set before the first MKL call.
    os.environ.setdefault("MKL_CBWR", "AUTO")
    run_cli(cli, argv, obj=dict(lpips=lpips, **({"opener": opener} if opener else {})))


@cli.command()
@doctor_flags
@click.pass_obj
def doctor(s: Settings, out: Optional[Path], as_json: bool) -> None:
    """Check the install, then run every stage on random weights (nothing is read from the weights folder)."""
    report = diagnose(s.home, s.device, out or s.home / "doctor", progress=not (s.quiet or as_json))
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
