"""The bad-input corpus: photos, drags, options, damaged runs and caches, hostile files, web bodies.

Every case runs the real command (in process, through `run_pipeline.main`) or posts to the
real app, and checks the promise of design.md's Reliability section: one line, exit code 2,
nothing lost and nothing half-written.  The terminal summary counts the cases tried and passed.
"""

import io
import json
import math
import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (
    DRAG,
    LEFT_DRAG,
    PORTRAIT,
    TARGET,
    cli,
    faceless_photo,
    random_lpips,
    tiny_generator,
    tiny_services,
    write_nvidia_pickle,
)

LONG_FLOAT = re.compile(r"\d\.\d{5,}")


def one_line_refusal(code, err, *needles):
    """Exit 2 with a single `photodrag: error: ...` line containing every needle."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("photodrag: error: "), err
    for n in needles:
        assert n in lines[0], err
    assert not LONG_FLOAT.search(lines[0]), f"unrounded number in {lines[0]!r}"


def edit_args(env, photo, out, *extra):
    return [
        "edit",
        str(photo),
        "-o",
        str(out),
        "--model",
        str(env["model"]),
        "--projection-steps",
        "3",
        "--tuning-steps",
        "1",
        "--lpips-threshold",
        "0",
        "--steps",
        "2",
        *extra,
    ]


# 1. the user's photo is never overwritten ------------------------------------------------------
def test_output_equal_to_input_is_refused(env, capsys):
    photo = env["tmp"] / "me.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    before = photo.read_bytes()
    recipe = str(env["recipe"]())
    code, _, err = cli(capsys, "edit", str(photo), "--recipe", recipe, "-o", str(photo))
    one_line_refusal(code, err, "refusing to overwrite", "--overwrite-input")
    assert photo.read_bytes() == before and not (env["home"] / "runs").exists()
    # the same file under another name (a hard link)
    link = env["tmp"] / "link.jpg"
    os.link(photo, link)
    code, _, err = cli(capsys, "edit", str(photo), "--recipe", recipe, "-o", str(link))
    one_line_refusal(code, err, "refusing to overwrite")
    assert photo.read_bytes() == before


def test_batch_output_equal_to_another_input_is_refused(env, capsys):
    outdir = env["tmp"] / "outs"
    outdir.mkdir()
    a = env["tmp"] / "a.jpg"
    a.write_bytes(PORTRAIT.read_bytes())
    b = outdir / "a_edited.jpg"  # what the batch would write for a.jpg
    b.write_bytes(PORTRAIT.read_bytes())
    recipe = env["recipe"]()
    code, _, err = cli(capsys, "edit", str(a), str(b), "--recipe", str(recipe), "-o", str(outdir))
    one_line_refusal(code, err, "is the input photo", str(b))
    assert b.read_bytes() == PORTRAIT.read_bytes() and not (env["home"] / "runs").exists()
    code, _, err = cli(capsys, "edit", str(a), "--recipe", str(recipe), "-o", str(recipe))
    one_line_refusal(code, err, "is the input file")
    assert json.loads(recipe.read_text())["drags"]


def test_overwrite_input_keeps_the_original_in_the_run_folder(env, capsys):
    photo = env["tmp"] / "me.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    original = photo.read_bytes()
    run = env["tmp"] / "run"
    code, _, err = cli(
        capsys, *edit_args(env, photo, photo, "--drag", DRAG, "--run-dir", str(run), "--overwrite-input")
    )
    assert code == 0, err
    assert photo.read_bytes() != original  # the edit was written where asked
    kept = list((run / "input").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == original
    ran = json.loads((run / "recipe.json").read_text())
    assert ran["photo"] == str(kept[0].resolve())
    assert json.loads((run / "align" / "align.json").read_text())["photo"]["path"] == str(kept[0].resolve())


# 1b. a run folder is the tool's own: a user's folder is refused, no input is overwritten ---------
def test_a_users_folder_as_run_folder_is_refused_and_left_as_it_was(env, capsys):
    mine = env["tmp"] / "mine"
    (mine / "composite").mkdir(parents=True)
    (mine / "composite" / "notes.txt").write_text("my notes")
    recipe = mine / "recipe.json"
    recipe.write_bytes(env["recipe"]().read_bytes())
    before = sorted((p.relative_to(mine), p.read_bytes() if p.is_file() else None) for p in mine.rglob("*"))
    out = env["tmp"] / "o.jpg"
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(out), "--run-dir", str(mine))
    one_line_refusal(code, err, str(mine), "not a photodrag run folder")
    for argv in (["align", str(PORTRAIT), "--out", str(mine)], ["composite", str(mine), "-o", str(out)]):
        code, _, err = cli(capsys, *argv)
        one_line_refusal(code, err, "not a photodrag run folder")
    assert sorted((p.relative_to(mine), p.read_bytes() if p.is_file() else None) for p in mine.rglob("*")) == before
    assert not out.exists()


def test_an_input_or_output_among_the_run_folders_own_files_is_refused(env, capsys):
    run, out = env["tmp"] / "run", env["tmp"] / "o.jpg"
    recipe = env["recipe"](mask={"circle": [246, 141, 20]})
    assert cli(capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(out), "--run-dir", str(run))[0] == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    mask = run / "drag" / "mask.png"  # written by the drag stage, whose folder a rerun replaces whole
    for victim, args in [
        (run / "recipe.json", ["--recipe", str(run / "recipe.json"), "-o", str(out)]),  # the run rewrites it
        (mask, ["--recipe", str(recipe), "--mask", str(mask), "-o", str(out)]),
        (run / "drag" / "o.jpg", ["--recipe", str(recipe), "-o", str(run / "drag" / "o.jpg")]),
    ]:
        code, _, err = cli(capsys, "edit", str(PORTRAIT), *args, "--run-dir", str(run))
        one_line_refusal(code, err, str(victim), "one of the run folder's own files")
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_folder_in_use_fails_at_once_with_no_wait(env, capsys):
    from common.run import locked_run

    run = env["tmp"] / "run"
    with locked_run(run):  # another process's edit, as far as the lock is concerned
        code, _, err = cli(
            capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(env["tmp"] / "o.jpg"),
            "--run-dir", str(run), "--no-wait",
        )  # fmt: skip
    one_line_refusal(code, err, str(run), "in use by another photodrag process")
    assert sorted(p.name for p in run.iterdir()) == [".photodrag-run"]


# 2 + 3. damaged caches and run folders are noticed and recomputed ------------------------------
def test_damaged_cache_entry_is_recomputed_on_a_plain_rerun(env, capsys):
    out, run = env["tmp"] / "o.jpg", env["tmp"] / "run"
    first = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out), "--run-dir", str(run))
    assert first[0] == 0, first[2]
    entry = json.loads((run / "invert" / "generator.json").read_text())["path"]
    data = open(entry, "rb").read()
    open(entry, "wb").write(data[: len(data) // 2])  # truncated
    other = env["recipe"](drags=[{"handle": [200, 139], "target": [195, 135]}])
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(other), "-o", str(out), "--run-dir", str(run))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and warnings[0].startswith("photodrag: warning: "), err
    assert env["calls"]["project"] == 2  # recomputed
    assert os.path.getsize(entry) == len(data)
    # a fresh run folder with the same recipe: the repaired entry is a cache hit
    code, _, err = cli(
        capsys, "edit", str(PORTRAIT), "--recipe", str(other), "-o", str(out), "--run-dir", str(env["tmp"] / "fresh")
    )
    assert code == 0 and env["calls"]["project"] == 2, err


def test_deleted_stage_files_rerun_their_stage_and_those_after(env, capsys):
    out, run = env["tmp"] / "o.jpg", env["tmp"] / "run"
    recipe = env["recipe"]()
    assert cli(capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(out), "--run-dir", str(run))[0] == 0
    for victim, reruns in [
        ("drag/w_edited.safetensors", ["drag"]),
        ("invert/pivot.safetensors", ["invert", "drag"]),
        ("align/aligned.png", ["align", "invert", "drag"]),
    ]:
        stamps = {st: (run / st / f"{st}.json").stat().st_mtime_ns for st in ("align", "invert", "drag")}
        (run / victim).unlink()
        code, _, err = cli(
            capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(out), "--run-dir", str(run)
        )
        assert code == 0, err
        assert (run / victim).is_file()
        ran = [st for st in stamps if (run / st / f"{st}.json").stat().st_mtime_ns != stamps[st]]
        assert ran == reruns, victim
    assert env["calls"]["project"] == 1  # the rerun inversions were cache hits


def test_damaged_cache_entry_behind_a_run_folder_is_named_by_drag(env, capsys):
    out, run = env["tmp"] / "o.jpg", env["tmp"] / "run"
    first = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out), "--run-dir", str(run))
    assert first[0] == 0, first[2]
    entry = json.loads((run / "invert" / "generator.json").read_text())["path"]
    with open(entry, "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\0" * 8)  # same size, other bytes
    code, _, err = cli(capsys, "drag", str(run), "--drag", LEFT_DRAG)
    one_line_refusal(code, err, "damaged", "re-run `photodrag invert")


# 4 + 5. the inversion options and the preview profile on edit ---------------------------------
def test_edit_takes_the_inversion_options_and_the_preview_profile(env, capsys):
    out, run = env["tmp"] / "o.png", env["tmp"] / "run"
    with pytest.raises(SystemExit) as exc:
        from run_pipeline import main

        main(
            [
                "--device",
                "cpu",
                *edit_args(
                    env,
                    PORTRAIT,
                    out,
                    "--drag",
                    DRAG,
                    "--run-dir",
                    str(run),
                    "--preview",
                    "--seed",
                    "3",
                    "--w-plus",
                ),
            ],
            lpips=random_lpips,
        )
    _, err = capsys.readouterr()
    assert exc.value.code == 0, err
    inv = json.loads((run / "invert" / "invert.json").read_text())
    cfg = inv["config"]
    assert inv["profile"] == cfg["profile"] == "preview" and cfg["projection"]["lpips_net"] == "alex"  # profile
    assert cfg["projection"]["steps"] == 3 and cfg["tuning"]["steps"] == 1 and cfg["seed"] == 3  # explicit wins
    assert cfg["projection"]["w_plus"] is True
    assert re.search(r"invert .*preview profile", err), err  # named in the summary
    ran = json.loads((run / "recipe.json").read_text())
    assert ran["invert"]["profile"] == "preview" and ran["invert"]["projection_steps"] == 3


def test_every_option_the_warnings_recommend_exists(env):
    import run_pipeline
    from inversion.stage import likely_causes

    texts = likely_causes(10, 512, None, 20, False) + likely_causes(None, 512, None, None, None)
    named = set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(texts)))
    assert {"--tuning-steps", "--w-plus"} <= named
    for command in ("edit", "invert", "serve"):
        have = {o for p in run_pipeline.cli.commands[command].params for o in p.opts}
        assert named <= have, f"{command} lacks {named - have}"


def test_progress_bars_show_an_eta():
    from inversion.api import _bar

    bar, step = _bar(10, "projection", True)
    with bar:
        step(0, {"loss": 1.0})
        assert re.search(r"<\d\d:\d\d", str(bar))


# 8. small faces ---------------------------------------------------------------------------------
def test_small_face_warns_in_align_json_and_the_summary(env, capsys):
    small = env["tmp"] / "small.png"
    with Image.open(PORTRAIT) as im:
        im.resize((im.width * 2 // 5, im.height * 2 // 5), Image.LANCZOS).save(small)  # a 36x36 px face
    recipe = env["recipe"](coords="aligned", drags=[{"handle": [36, 44], "target": [38, 42]}])
    run = env["tmp"] / "run"
    with pytest.raises(SystemExit) as exc:
        from run_pipeline import main

        main(
            [
                "--device",
                "cpu",
                "edit",
                str(small),
                "--recipe",
                str(recipe),
                "-o",
                str(env["tmp"] / "o.png"),
                "--run-dir",
                str(run),
            ],
            lpips=random_lpips,
        )
    _, err = capsys.readouterr()
    assert exc.value.code == 0, err
    align = json.loads((run / "align" / "align.json").read_text())
    assert any("small face" in w and "under 64 px" in w for w in align["warnings"])
    assert re.search(r"photodrag: warning: small face: the face is only 3\dx3\d px", err), err
    assert re.search(r"face +3\dx3\d px in the photo .*small", err), err


# 9. points, recipes and usage errors ------------------------------------------------------------
@pytest.mark.parametrize(
    "drags,needles",
    [
        ([DRAG, "246,141:240,130"], ["both move the handle (246, 141)", "one target"]),
        (["246,141:247,141"], ["under half an aligned pixel"]),
        (["5,5:10,10"], ["outside the aligned face crop"]),
    ],
)
def test_bad_drags_are_refused(env, capsys, drags, needles):
    args = ["edit", str(PORTRAIT), "-o", str(env["tmp"] / "o.jpg"), "--model", str(env["model"])]
    for d in drags:
        args += ["--drag", d]
    code, _, err = cli(capsys, *args)
    one_line_refusal(code, err, *needles)
    assert not (env["tmp"] / "o.jpg").exists()


def test_relative_points_are_rounded_in_messages(env, capsys):
    w, h = Image.open(PORTRAIT).size
    recipe = env["recipe"](coords="relative", drags=[{"handle": [0.013, 0.017], "target": [0.5, 0.5]}])
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(env["tmp"] / "o.jpg"))
    one_line_refusal(code, err, "outside", f"({round(0.013 * w, 2):g}, {round(0.017 * h, 2):g})")


def edit_with_recipe(env, capsys, recipe_text: str):
    """`edit PORTRAIT --recipe` with the given recipe text: (exit code, stderr, the run folder it would use)."""
    recipe = env["tmp"] / "r.json"
    recipe.write_text(recipe_text)
    run = env["tmp"] / "run"
    code, _, err = cli(
        capsys,
        "edit",
        str(PORTRAIT),
        "--recipe",
        str(recipe),
        "-o",
        str(env["tmp"] / "o.jpg"),
        "--model",
        str(env["model"]),
        "--run-dir",
        str(run),
    )
    return code, err, run


@pytest.mark.parametrize(
    "presets,needles",
    [
        (["grin=0.5"], ["unknown preset 'grin'", "known presets: smile"]),
        (["smile=abc"], ["smile=abc", "not a number"]),
        (["smile=nan"], ["finite"]),
        (["smile=3"], ["outside -1..1"]),
        (["smile=0"], ["nothing to drag"]),
        (["smile=0.5", "smile=0.2"], ["twice"]),
    ],
)
def test_bad_presets_are_refused_before_anything_is_written(env, capsys, presets, needles):
    run, out = env["tmp"] / "run", env["tmp"] / "o.jpg"
    args = ["edit", str(PORTRAIT), "-o", str(out), "--model", str(env["model"]), "--run-dir", str(run)]
    for p in presets:
        args += ["--preset", p]
    code, _, err = cli(capsys, *args)
    one_line_refusal(code, err, *needles)
    assert not run.exists() and not out.exists()


@pytest.mark.parametrize(
    "presets,needles",
    [
        ('{"grin": 0.5}', ["known presets"]),
        ('{"smile": "0.5"}', ["must be a number"]),
        ('{"smile": NaN}', ["NaN"]),
        ('{"smile": -2}', ["outside -1..1"]),
        ('{"smile": 0}', ["nothing to drag"]),
    ],
)
def test_bad_presets_in_a_recipe_are_refused_before_align(env, capsys, presets, needles):
    code, err, run = edit_with_recipe(env, capsys, '{"presets": ' + presets + "}")
    one_line_refusal(code, err, "recipe", *needles)
    assert not run.exists()


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_recipe_are_refused_before_align(env, capsys, text):
    code, err, run = edit_with_recipe(env, capsys, '{"drags": [{"handle": [' + text + ', 141], "target": [251, 136]}]}')
    one_line_refusal(code, err, "recipe")
    assert not run.exists()


@pytest.mark.parametrize("section", ["invert", "drag"])
def test_non_finite_options_in_a_recipe_are_refused(env, capsys, section):
    recipe = env["tmp"] / "r.json"
    key = "lpips_threshold" if section == "invert" else "lr"
    recipe.write_text(f'{{"drags": [{{"handle": [246, 141], "target": [251, 136]}}], "{section}": {{"{key}": NaN}}}}')
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(env["tmp"] / "o.jpg"))
    one_line_refusal(code, err, "NaN")
    from common.errors import UsageError
    from pipeline.recipe import parse_recipe

    with pytest.raises(UsageError, match="finite"):  # a recipe built in Python is checked too
        parse_recipe({"drags": [{"handle": [1, 2], "target": [3, 4]}], section: {key: math.nan}})


@pytest.mark.parametrize(
    "drag,needles",
    [
        ('{"lr": -1}', ['"drag": lr must be > 0, got -1']),
        ('{"lr": NaN}', ["NaN"]),
        ('{"lambda_mask": -3}', ["lambda_mask must be >= 0"]),
        ('{"steps": -5}', ["steps must be >= 1"]),
        ('{"steps": 2.5}', ['"drag.steps" has the wrong type']),
        ('{"r2": 0}', ["r2 must be > 0"]),
    ],
)
def test_bad_drag_settings_in_a_recipe_are_refused_before_align(env, capsys, drag, needles):
    code, err, run = edit_with_recipe(
        env, capsys, '{"drags": [{"handle": [371, 569], "target": [390, 550]}], "drag": ' + drag + "}"
    )
    one_line_refusal(code, err, "recipe", *needles)
    assert not run.exists()


def test_a_drag_config_checks_its_own_ranges():
    from common.errors import UsageError
    from drag.config import DragConfig

    for bad in (dict(lr=-1), dict(lr=math.nan), dict(lambda_mask=-3), dict(steps=-5), dict(steps=1.5), dict(r1=0)):
        with pytest.raises(UsageError, match=next(iter(bad))):
            DragConfig(**bad)
    assert DragConfig(lr=0.01, steps=1, lambda_mask=0).lr == 0.01


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["edit", "--bogus"], ["No such option", "photodrag edit --help"]),
        (["edit", "x.jpg"], ["no output given", "-o OUT"]),
        (["edit"], ["no photo given", "photodrag edit PHOTO"]),
        (["invert", "run", "--projection-steps", "abc"], ["--projection-steps", "not a valid integer"]),
        (["edit", "x.jpg", "-o", "y.jpg", "--tuning-steps", "-1"], ["--tuning-steps"]),
        (
            ["edit", "x.jpg", "-o", "y.jpg", "--drag", "1,2:3,4", "--lpips-threshold", "nan"],
            ["--lpips-threshold", "got nan"],
        ),
        (["serve", "--seed", "x"], ["--seed"]),
        # the drag settings: ranges declared on DragConfig, NaN and infinity refused too
        (["drag", "run", "--drag", "1,2:3,4", "--lr", "-1"], ["--lr", "x>0"]),
        (["drag", "run", "--drag", "1,2:3,4", "--lr", "nan"], ["--lr", "must be > 0, got nan"]),
        (["drag", "run", "--drag", "1,2:3,4", "--lambda-mask", "-3"], ["--lambda-mask", "x>=0"]),
        (["drag", "run", "--drag", "1,2:3,4", "--steps", "-5"], ["--steps", "x>=1"]),
        (["drag", "run", "--drag", "1,2:3,4", "--r1", "inf"], ["--r1", "got inf"]),
        (["serve", "--lr", "nan"], ["--lr", "got nan"]),
        (["serve", "--r2", "0"], ["--r2"]),
        (["nosuchcommand"], ["No such command"]),
        (["--device", "tpu", "edit"], ["--device"]),
    ],
)
def test_usage_errors_share_the_tool_style(capsys, argv, needles):
    code, _, err = cli(capsys, *argv)
    one_line_refusal(code, err, *needles)


@pytest.mark.parametrize("group", [[], ["weights"], ["cache"]])
def test_a_bare_command_group_shows_its_help_readably(capsys, group):
    code, _, err = cli(capsys, *group, opts=())
    assert code == 2 and err.startswith("Usage: photodrag") and "Commands:" in err
    assert len(err.strip().splitlines()) > 5  # the help itself, not squashed into one error line


@pytest.mark.parametrize(
    "extra,name,needle",
    [(["--trunc", "nan"], "g.png", "finite"), (["--trunc", "inf"], "g.png", "finite"), ([], "g.jpg", "PNG")],
)
def test_generate_refuses_non_finite_truncation_and_non_png_output(capsys, tmp_path, extra, name, needle):
    out, model = tmp_path / name, write_nvidia_pickle(tmp_path / "tiny.pkl", tiny_generator(res=32))
    code, _, err = cli(capsys, "generate", "--model", str(model), *extra, "-o", str(out))
    one_line_refusal(code, err, needle)
    assert not out.exists()


# photos, options and hostile files through the real commands ----------------------------------
@pytest.fixture
def photos(tmp_path):
    return tmp_path


@pytest.mark.parametrize(
    "case,needles",
    [
        ("missing", ["not found"]),
        ("empty", [""]),
        ("truncated", [""]),
        ("text", ["not an image"]),
        ("dogs", ["no face found"]),
        ("face index", ["out of range"]),
        ("size", ["power of two"]),
        ("directory", [""]),
    ],
)
def test_bad_photos_and_align_options(photos, capsys, case, needles):
    path, extra = photos / "p.jpg", []
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = PORTRAIT.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "text":
        path.write_text("hello")
    elif case == "dogs":
        path = faceless_photo(photos)
    elif case == "face index":
        path, extra = PORTRAIT, ["--face", "7"]
    elif case == "size":
        path, extra = PORTRAIT, ["--size", "300"]
    elif case == "directory":
        path = photos
    code, _, err = cli(capsys, "align", str(path), "--out", str(photos / "run"), *extra)
    one_line_refusal(code, err, *needles)
    assert not (photos / "run" / "align").exists()


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["pickle", "pt", "safetensors-garbage"])
def test_hostile_or_broken_model_files_run_nothing(tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / {"pickle": "evil.pkl", "pt": "evil.pt", "safetensors-garbage": "bad.safetensors"}[kind]
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"G_ema": _Hostile(marker)}))
    elif kind == "pt":
        torch.save({"g_ema": _Hostile(marker)}, path)
    else:
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    code, _, err = cli(capsys, "generate", "--model", str(path), "-o", str(tmp_path / "out.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("photodrag: error: "), err
    assert not marker.exists() and not (tmp_path / "out.png").exists()


# 4 + 5 + 6. the web editor ----------------------------------------------------------------------
@pytest.fixture
def web(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from inversion.perceptual import Perceptual
    from pipeline.webui.app import create_app
    from pipeline.webui.session import SessionManager
    from weights.checkpoint import save_generator

    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=64, dim=32), model)
    nets = {n: Perceptual(n, random_backbone=True) for n in ("alex",)}
    svc = tiny_services(model, tmp_path / "cache", nets)
    app = create_app(SessionManager(tmp_path / "ui", svc), allowed_hosts=["127.0.0.1:7860"])
    with TestClient(app, base_url="http://127.0.0.1:7860", raise_server_exceptions=False) as client:
        r = client.post("/api/session", files={"file": ("portrait.jpg", PORTRAIT.read_bytes(), "image/jpeg")})
        assert r.status_code == 200
        yield client, r.json()["id"]


WRONG_BODIES = [
    ("invert", {"face": "abc"}, "face"),
    ("invert", {"face": True}, "face"),
    ("invert", {"face": 1.5}, "face"),
    ("invert", {"face": [0]}, "face"),
    ("invert", {"face": -1}, "face"),
    ("invert", {"fase": 0}, "fase"),
    ("invert", [0], "body"),
    ("invert", "0", "body"),
    ("drag", {"drags": [{"handle": [246, 141], "target": list(TARGET)}], "steps": "abc"}, "steps"),
    ("drag", {"drags": [{"handle": 5, "target": list(TARGET)}]}, "handle"),
    ("drag", {"drags": [{"handle": [246], "target": list(TARGET)}]}, "handle"),
    ("drag", {"drags": [{"handle": ["246", 141], "target": list(TARGET)}]}, "handle"),
    ("drag", {"drags": [{"handle": [246, 141], "target": None}]}, "target"),
    ("drag", {"drags": [{"handle": [246, 141]}]}, "target"),
    ("drag", {"drags": DRAG}, "drags"),
    ("drag", {"drags": [5]}, "drags"),
    ("drag", {"drags": [{"handle": [246, 141], "target": list(TARGET)}], "mask": 5}, "mask"),
    ("drag", {"drags": [{"handle": [246, 141], "target": list(TARGET)}], "steps": 10**9}, "steps"),
    ("drag", {"drags": [{"handle": [246, 141], "target": list(TARGET)}], "speed": 3}, "speed"),
    ("drag", None, "body"),
    ("drag", {"drags": [{"handle": [371, 569], "target": [390, 550]}], "lr": -1}, "lr"),
    ("drag", {"drags": [{"handle": [371, 569], "target": [390, 550]}], "lambda_mask": -3}, "lambda_mask"),
    ("drag", {"drags": [{"handle": [371, 569], "target": [390, 550]}], "steps": -5}, "steps"),
    ("drag", {"drags": [{"handle": [371, 569], "target": [390, 550]}], "r1": "3"}, "r1"),
    ("drag", {"presets": {"smile": "0.5"}}, "presets"),
    ("drag", {"presets": {"smile": None}}, "presets"),
    ("drag", {"presets": {"smile": True}}, "presets"),
    ("drag", {"presets": [["smile", 0.5]]}, "presets"),
    ("drag", {"presets": "smile=0.5"}, "presets"),
    ("presets", {"presets": {"smile": "x"}}, "presets"),
    ("presets", {"presets": 5}, "presets"),
    ("presets", {"presets": {"smile": 0.5}, "extra": 1}, "extra"),
    ("presets", {"smile": 0.5}, "smile"),
    ("presets", [1], "body"),
    ("presets", None, "body"),
]


@pytest.mark.parametrize("endpoint,body,field", WRONG_BODIES)
def test_wrongly_typed_web_bodies_get_a_4xx_naming_the_field(web, endpoint, body, field):
    client, sid = web
    r = client.post(f"/api/session/{sid}/{endpoint}", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    assert client.get(f"/api/session/{sid}/status").json()["state"] == "uploaded"  # nothing started


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1e999"])
def test_non_finite_drag_settings_in_a_web_body_get_a_422(web, value):
    client, sid = web
    body = '{"drags": [{"handle": [371, 569], "target": [390, 550]}], "lr": ' + value + "}"
    r = client.post(f"/api/session/{sid}/drag", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lr" in r.json()["error"], r.text
    assert client.get(f"/api/session/{sid}/status").json()["state"] == "uploaded"


@pytest.mark.parametrize("endpoint", ["stop", "undo", "reset", "close"])
def test_bodies_posted_to_endpoints_that_take_none_are_not_500(web, endpoint):
    client, sid = web
    for body in ({"x": "abc"}, [1, 2], "junk"):
        r = client.post(f"/api/session/{sid}/{endpoint}", json=body)
        assert r.status_code < 500, r.text
    r = client.post(
        f"/api/session/{sid}/{endpoint}", content=b"\xff\xfe not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code < 500


@pytest.mark.parametrize("how", ["json instead of a file", "a text field named file", "no file", "bad json"])
def test_wrong_uploads_get_a_4xx(web, how):
    client, _ = web
    if how == "json instead of a file":
        r = client.post("/api/session", json={"file": "abc"})
    elif how == "a text field named file":
        r = client.post("/api/session", data={"file": "abc"})
    elif how == "no file":
        r = client.post("/api/session", files={"other": ("x.jpg", b"123", "image/jpeg")})
    else:
        r = client.post("/api/session", content=b"{", headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert "file" in r.text


def test_the_page_names_the_inversion_profile(web):
    client, _ = web
    info = client.get("/api/info").json()
    assert info["inversion"]["profile"] == "preview" and info["inversion"]["projection_steps"] == 3
    assert "inv.profile" in client.get("/app.js").text


FORGED_HEADERS = [
    ("another site's name (DNS rebinding)", {"Host": "attacker.example"}),
    ("another site's name with the port", {"Host": "attacker.example:7860"}),
    ("a look-alike name", {"Host": "127.0.0.1.attacker.example:7860"}),
    ("the right name on another port", {"Host": "127.0.0.1:8000"}),
    ("the right name without the port", {"Host": "127.0.0.1"}),
    ("TestClient's default name", {"Host": "testserver"}),
    ("a Host with a path", {"Host": "127.0.0.1:7860/x"}),
    ("a Host with user info", {"Host": "me@127.0.0.1:7860"}),
    ("an empty Host", {"Host": ""}),
    ("another site's page", {"Origin": "http://attacker.example"}),
    ("a look-alike page", {"Origin": "http://127.0.0.1.attacker.example:7860"}),
    ("another port's page", {"Origin": "http://127.0.0.1:8000"}),
    ("another scheme", {"Origin": "ws://127.0.0.1:7860"}),
    ("a sandboxed page", {"Origin": "null"}),
    ("a file:// page", {"Origin": "file://"}),
    ("an Origin with a path", {"Origin": "http://127.0.0.1:7860/x"}),
    ("both forged", {"Host": "attacker.example", "Origin": "http://attacker.example"}),
]


@pytest.mark.parametrize("headers", [h for _, h in FORGED_HEADERS], ids=[n for n, _ in FORGED_HEADERS])
def test_forged_host_or_origin_is_refused_before_anything_runs(web, headers, tmp_path):
    client, sid = web
    before = sorted(p.name for p in (tmp_path / "ui").iterdir())
    for r in (
        client.post(
            "/api/session", files={"file": ("portrait.jpg", PORTRAIT.read_bytes(), "image/jpeg")}, headers=headers
        ),
        client.post(f"/api/session/{sid}/invert", json={"face": 0}, headers=headers),
        client.post(f"/api/session/{sid}/close", headers=headers),
        client.get(f"/api/session/{sid}/status", headers=headers),
        client.get("/", headers=headers),
    ):
        assert r.status_code == 403, r.text
        msg = r.json()["error"]
        assert msg.startswith("refused: ") and "\n" not in msg
    assert sorted(p.name for p in (tmp_path / "ui").iterdir()) == before  # nothing stored, nothing closed
    ok = client.get(f"/api/session/{sid}/status", headers={"Origin": "http://127.0.0.1:7860"})
    assert ok.status_code == 200 and ok.json()["state"] == "uploaded"  # nothing started


@pytest.mark.parametrize(
    "option,value",
    [
        ("--allow-host", "a/b"),
        ("--allow-host", "proxy.example:99999"),
        ("--allow-host", "proxy.example:"),
        ("--allow-host", ""),
        ("--allow-host", "http://proxy.example"),
        ("--max-sessions", "0"),
        ("--max-megapixels", "0.5"),
        ("--idle-minutes", "0"),
        ("--idle-minutes", "-1"),
    ],
)
def test_wrong_serve_limits_and_hosts_are_usage_errors(home, capsys, option, value):
    code, _, err = cli(capsys, "serve", option, value)
    assert code == 2 and len(err.strip().splitlines()) == 1 and option in err, err
    assert "Invalid value" in err  # the option exists and says why the value is wrong


def test_serve_allow_host_limits_and_a_bounded_shutdown(env, capsys, monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app, **kw))
    argv = ["serve", "--model", str(env["model"]), "--preview", "--port", "8000"]
    argv += ["--allow-host", "photos.example", "--allow-host", "10.0.0.5:8443"]
    code, _, err = cli(capsys, *argv, "--max-sessions", "3", "--max-megapixels", "50", "--idle-minutes", "2")
    assert code == 0, err
    assert 0 < seen["timeout_graceful_shutdown"] <= 5  # SIGTERM waits seconds, not for stalled uploads
    limits = seen["app"].state.manager.limits
    assert (limits.max_sessions, limits.max_pixels, limits.idle_drop_s) == (3, 50_000_000, 120)
    with TestClient(seen["app"], base_url="https://photos.example") as client:
        assert client.get("/api/presets", headers={"Origin": "https://photos.example"}).status_code == 200
        for host, status in [
            ("10.0.0.5:8443", 200),
            ("127.0.0.1:8000", 200),  # its own address still
            ("localhost:8000", 200),
            ("10.0.0.5:9000", 403),
            ("127.0.0.1:7860", 403),
            ("photos.example.attacker.example", 403),
        ]:
            assert client.get("/api/presets", headers={"Host": host}).status_code == status, host


def test_serve_sets_the_web_editors_options(env, capsys, monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app))
    code, _, err = cli(
        capsys, "serve", "--model", str(env["model"]), "--preview", "--tuning-steps", "7", "--w-plus", "--r2", "9"
    )
    assert code == 0, err
    with TestClient(seen["app"], base_url="http://127.0.0.1:7860") as client:  # serve's default address
        inv = client.get("/api/info").json()["inversion"]
    assert inv["profile"] == "preview" and inv["tuning_steps"] == 7 and inv["w_plus"] is True
    assert inv["projection_steps"] == 100  # the preview profile's own value


def test_web_drag_with_wrong_types_does_not_break_the_next_request(web):
    client, sid = web
    assert client.post(f"/api/session/{sid}/drag", json={"drags": [{"handle": 5, "target": [1, 2]}]}).status_code == 422
    assert client.get(f"/api/session/{sid}/status").status_code == 200
    img = client.get(f"/api/session/{sid}/frame.jpg")
    assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).format == "JPEG"
    assert np.asarray(Image.open(io.BytesIO(img.content))).size > 0
