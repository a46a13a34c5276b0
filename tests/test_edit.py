"""The end-to-end `edit` command on real photos with a tiny generator (marked slow; runs in CI)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.run import MARKER
from helpers import (
    DRAG,
    LEFT_TARGET,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    PORTRAIT,
    cli,
    faceless_photo,
    mirrored_portrait,
    no_network,
)

pytestmark = pytest.mark.slow


def test_edit_end_to_end_png_keeps_outside_pixels(env, capsys):
    src = env["tmp"] / "portrait.png"
    Image.open(PORTRAIT).save(src)
    out = env["tmp"] / "out.png"
    run_dir = env["tmp"] / "run"
    code, stdout, err = cli(
        capsys, "edit", str(src), "--recipe", str(env["recipe"]()), "-o", str(out), "--run-dir", str(run_dir)
    )
    assert code == 0, err
    assert stdout.strip() == str(out)
    for stage, files in {
        "align": ["align.json", "aligned.png", "preview.png"],
        "invert": ["invert.json", "pivot.safetensors"],
        "drag": ["drag.json", "edited.png", "preview.png"],
        "composite": ["blend_mask.png", "compare.png"],
    }.items():
        for f in files:
            assert (run_dir / stage / f).is_file(), f"{stage}/{f}"
    assert (run_dir / "recipe.json").is_file()
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    assert b.shape == a.shape
    mask = np.asarray(Image.open(run_dir / "composite" / "blend_mask.png"))
    assert mask.shape == a.shape[:2] and (mask > 0).any() and (mask == 0).any()
    np.testing.assert_array_equal(b[mask == 0], a[mask == 0])  # byte-identical outside the mask
    assert (b[mask == 255] != a[mask == 255]).any()  # and the face did change


def test_second_edit_with_other_points_skips_inversion(env, capsys):
    out1, out2 = env["tmp"] / "a.jpg", env["tmp"] / "b.jpg"
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out1))
    assert code == 0, err
    assert env["calls"]["project"] == 1
    other = env["recipe"](drags=[{"handle": list(MOUTH_LEFT), "target": list(LEFT_TARGET)}])
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(other), "-o", str(out2))
    assert code == 0, err
    assert env["calls"]["project"] == 1  # no projection (or tuning) step ran again
    img = Image.open(out2)
    assert img.format == "JPEG" and img.size == Image.open(PORTRAIT).size
    runs = sorted((env["home"] / "runs").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(runs) == 2  # another edit of the photo gets its own run folder (named by the recipe)
    handles = [json.loads((r / "drag" / "drag.json").read_text())["points"][0]["photo"]["handle"] for r in runs]
    assert handles == [list(map(float, MOUTH_RIGHT)), list(map(float, MOUTH_LEFT))]  # the first run is left as it was
    # a fresh run folder still hits the inversion cache
    code, _, err = cli(
        capsys, "edit", str(PORTRAIT), "--recipe", str(other), "-o", str(out2), "--run-dir", str(env["tmp"] / "fresh")
    )
    assert code == 0, err
    assert env["calls"]["project"] == 1
    inv = json.loads((env["tmp"] / "fresh" / "invert" / "invert.json").read_text())
    assert inv["cache"]["hit"] is True


def test_changed_options_invalidate_later_stages(env, capsys):
    run_dir = env["tmp"] / "run"
    base = ["edit", str(PORTRAIT), "-o", str(env["tmp"] / "o.jpg"), "--run-dir", str(run_dir)]
    assert cli(capsys, *base, "--recipe", str(env["recipe"]()))[0] == 0
    drag_before = (run_dir / "drag" / "drag.json").stat().st_mtime_ns
    changed = env["recipe"](invert={"projection_steps": 5, "tuning_steps": 2, "lpips_threshold": 0.0})
    assert cli(capsys, *base, "--recipe", str(changed))[0] == 0
    assert env["calls"]["project"] == 2  # new PTI options: the inversion ran again
    assert (run_dir / "drag" / "drag.json").stat().st_mtime_ns != drag_before  # and so did the drag
    code, _, err = cli(capsys, *base, "--recipe", str(changed), "--from", "invert")
    assert code == 0 and env["calls"]["project"] == 2  # forced, but the cache answers


def test_recipe_replay_is_exact(env, capsys):
    run_dir = env["tmp"] / "run"
    out1, out2 = env["tmp"] / "one.png", env["tmp"] / "two.png"
    assert (
        cli(
            capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out1), "--run-dir", str(run_dir)
        )[0]
        == 0
    )
    ran = json.loads((run_dir / "recipe.json").read_text())
    assert ran["photo"] == str(PORTRAIT.resolve())
    code, _, err = cli(
        capsys,
        "edit",
        "--recipe",
        str(run_dir / "recipe.json"),
        "-o",
        str(out2),
        "--run-dir",
        str(env["tmp"] / "replay"),
    )
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(out1)), np.asarray(Image.open(out2)))


def test_interrupted_drag_resumes(env, capsys, monkeypatch):
    run_dir = env["tmp"] / "run"
    out = env["tmp"] / "o.jpg"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.edit.run_drag", interrupted)
    code, _, err = cli(
        capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out), "--run-dir", str(run_dir)
    )
    assert code == 130 and "interrupted" in err
    assert not out.exists() and not (run_dir / "drag").exists()
    assert (run_dir / "invert" / "invert.json").exists()
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == [MARKER]  # no temp files
    monkeypatch.undo()
    import inversion.api as api  # undo removed the counter too: count again

    calls = {"n": 0}
    real = api.project
    monkeypatch.setattr(api, "project", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1])
    no_lpips = lambda *a: pytest.fail("no LPIPS needed")
    code, _, err = cli(
        capsys,
        "edit",
        str(PORTRAIT),
        "--recipe",
        str(env["recipe"]()),
        "-o",
        str(out),
        "--run-dir",
        str(run_dir),
        lpips=no_lpips,
    )
    assert code == 0, err
    assert calls["n"] == 0 and out.exists()


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"drags": []}, "non-empty list"),
        ({"drags": [{"handle": [1, 2]}]}, "drags[0]"),
        ({"drags": [{"handle": [1, "x"], "target": [3, 4]}]}, "two finite numbers"),
        ({"coords": "inches"}, "coords"),
        ({"invert": {"tuning_steps": "many"}}, "wrong type"),
        ({"drag": {"speed": 3}}, "unknown"),
        ({"colour": "red"}, "unknown keys"),
        ({"mask": {"circle": [1, 2]}}, "mask.circle"),
        ({"align": {"size": 300}}, "power of two"),
        ({"version": 7}, "version 7"),
    ],
)
def test_recipe_validation(env, capsys, bad, message):
    out = env["tmp"] / "o.jpg"
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(env["recipe"](**bad)), "-o", str(out))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_malformed_recipe_file(env, capsys):
    p = env["tmp"] / "broken.json"
    p.write_text("{not json")
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--recipe", str(p), "-o", str(env["tmp"] / "o.jpg"))
    assert code == 2 and "not valid JSON" in err


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "not found"),
        ("text", "not an image"),
        ("dogs", "no face found"),
        ("outside", "outside"),
        ("extension", "unknown output extension"),
    ],
)
def test_bad_input_through_edit_is_one_line_exit_2(env, capsys, case, message):
    photo, out = PORTRAIT, env["tmp"] / "o.jpg"
    drags = [DRAG]
    if case == "missing":
        photo = env["tmp"] / "nope.jpg"
    elif case == "text":
        photo = env["tmp"] / "text.jpg"
        photo.write_text("hello")
    elif case == "dogs":
        photo = faceless_photo(env["tmp"])
    elif case == "outside":
        drags = ["5,5:10,10"]
    elif case == "extension":
        out = env["tmp"] / "o.xyz"
    args = ["edit", str(photo), "-o", str(out), "--model", str(env["model"]), "--run-dir", str(env["tmp"] / "r")]
    for d in drags:
        args += ["--drag", d]
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_missing_weights_stop_before_anything_is_written(env, capsys):
    out = env["tmp"] / "o.jpg"
    code, _, err = cli(capsys, "edit", str(PORTRAIT), "--drag", DRAG, "-o", str(out), opener=no_network)
    assert code == 2 and "missing weights: 1 file" in err and "weights fetch ffhq-512" in err
    assert not out.exists() and not (env["home"] / "runs").exists()


def test_batch_with_aligned_coordinates_and_alpha(env, capsys):
    rgba = env["tmp"] / "portrait_alpha.png"
    img = Image.open(PORTRAIT).convert("RGBA")
    alpha = np.full(img.size[::-1], 180, np.uint8)
    img.putalpha(Image.fromarray(alpha))
    img.save(rgba)
    w, h = img.size
    aligned = env["recipe"](coords="aligned", drags=[{"handle": [38, 45], "target": [40, 43]}])
    outdir = env["tmp"] / "outs"
    outdir.mkdir()
    code, out, err = cli(capsys, "edit", str(PORTRAIT), str(rgba), "--recipe", str(aligned), "-o", str(outdir))
    assert code == 0, err
    assert sorted(p.name for p in outdir.iterdir()) == [
        "album.json",
        "astronaut_edited.jpg",
        "portrait_alpha_edited.png",
    ]
    res = Image.open(outdir / "portrait_alpha_edited.png")
    assert res.mode == "RGBA" and res.size == (w, h)
    np.testing.assert_array_equal(np.asarray(res)[..., 3], alpha)


def test_batch_with_relative_coordinates_is_refused(env, capsys):
    rel = env["recipe"](coords="relative", drags=[{"handle": [0.5, 0.6], "target": [0.52, 0.58]}])
    code, _, err = cli(capsys, "edit", str(PORTRAIT), str(PORTRAIT), "--recipe", str(rel), "-o", str(env["tmp"] / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert '"relative" coordinates cannot be applied to 2 photos' in err


def test_exif_rotated_input_comes_out_upright(env, capsys):
    up = np.asarray(Image.open(PORTRAIT))
    exif = Image.Exif()
    exif[0x0112] = 6
    src = env["tmp"] / "rot.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(up, k=1))).save(src, exif=exif, quality=95)
    out = env["tmp"] / "rot_out.jpg"
    code, _, err = cli(capsys, "edit", str(src), "--recipe", str(env["recipe"]()), "-o", str(out))
    assert code == 0, err
    res = Image.open(out)
    assert res.size == (up.shape[1], up.shape[0])
    assert res.getexif().get(0x0112, 1) == 1


# edits by name (presets) ---------------------------------------------------------------------------
def _preset_recipe(env, **over):
    """The env recipe with presets instead of pixel drags."""
    path = env["recipe"](**over)
    data = json.loads(path.read_text())
    data.pop("drags")
    data.update(over)
    path.write_text(json.dumps(data))
    return path


def test_edit_with_a_preset_runs_all_stages_and_records_requested_vs_achieved(env, capsys):
    from align.record import AlignRecord
    from drag.presets import preset_drags, preset_motion
    from drag.record import DragRecord

    run_dir, out = env["tmp"] / "run", env["tmp"] / "smile.jpg"
    code, stdout, err = cli(
        capsys,
        "edit",
        str(PORTRAIT),
        "--preset",
        "smile=0.5",
        "-o",
        str(out),
        "--run-dir",
        str(run_dir),
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
        opts=("--device", "cpu"),
    )
    assert code == 0, err
    assert stdout.strip() == str(out) and out.is_file()
    for stage in ("align", "invert", "drag", "composite"):
        assert (run_dir / stage).is_dir(), stage
    align, drag = AlignRecord.load(run_dir), DragRecord.load(run_dir)
    lm = align.aligned_landmarks
    handles, targets = preset_drags(lm, {"smile": 0.5}, align.size)
    np.testing.assert_allclose([p["aligned"]["handle"] for p in drag.data["points"]], handles)
    np.testing.assert_allclose([p["aligned"]["target"] for p in drag.data["points"]], targets)
    assert drag.data["mask"] is True  # the preset's default mask
    report = drag.presets
    assert report["amounts"] == {"smile": 0.5}
    assert "identity" in drag.data
    _, disp = preset_motion(lm, "smile", 0.5)
    iod = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    if report["face_found"]:
        m = report["measured"]["smile"]
        assert m["amount"] == 0.5
        assert m["requested"]["px"] == pytest.approx(np.linalg.norm(disp, axis=1).mean(), abs=1e-3)
        assert m["requested"]["iod"] == pytest.approx(np.linalg.norm(disp, axis=1).mean() / iod, abs=1e-4)
        assert set(m["achieved"]) == {"iod", "px", "vector_px"} and len(m["achieved"]["vector_px"]) == 2
        assert "smile" in err and "requested vs achieved" in err
    else:
        assert report["measured"] == {} and "not measured" in report["note"]
        assert "no face detected again" in err
    ran = json.loads((run_dir / "recipe.json").read_text())
    assert ran["presets"] == {"smile": 0.5} and ran["drags"] == []


def test_preset_recipe_round_trips_and_replays_with_the_other_photos_landmarks(env, capsys):
    from align.record import AlignRecord
    from drag.presets import preset_drags
    from drag.record import DragRecord
    from pipeline.recipe import load_recipe

    recipe = _preset_recipe(env, presets={"smile": 0.5, "eyebrows": 0.8})
    run1 = env["tmp"] / "run1"
    code, _, err = cli(
        capsys, "edit", str(PORTRAIT), "--recipe", str(recipe), "-o", str(env["tmp"] / "a.jpg"), "--run-dir", str(run1)
    )
    assert code == 0, err
    ran = load_recipe(run1 / "recipe.json")
    assert ran.presets == {"smile": 0.5, "eyebrows": 0.8} and ran.presets_only
    other = mirrored_portrait(env["tmp"])
    run2 = env["tmp"] / "run2"
    code, _, err = cli(
        capsys,
        "edit",
        str(other),
        "--recipe",
        str(run1 / "recipe.json"),
        "-o",
        str(env["tmp"] / "b.jpg"),
        "--run-dir",
        str(run2),
    )
    assert code == 0, err
    for run in (run1, run2):
        align = AlignRecord.load(run)
        handles, targets = preset_drags(align.aligned_landmarks, ran.presets, align.size)
        points = DragRecord.load(run).data["points"]
        np.testing.assert_allclose([p["aligned"]["handle"] for p in points], handles)
        np.testing.assert_allclose([p["aligned"]["target"] for p in points], targets)
    first = [p["aligned"]["handle"] for p in DragRecord.load(run1).data["points"]]
    second = [p["aligned"]["handle"] for p in DragRecord.load(run2).data["points"]]
    assert not np.allclose(first, second)  # each photo's own landmarks


def test_presets_and_drags_mix_and_an_explicit_mask_overrides(env, capsys):
    from drag.record import DragRecord

    run_dir = env["tmp"] / "run"
    base = [
        "edit",
        str(PORTRAIT),
        "-o",
        str(env["tmp"] / "o.jpg"),
        "--run-dir",
        str(run_dir),
        "--recipe",
        str(env["recipe"]()),
        "--preset",
        "eyebrows=0.5",
    ]
    assert cli(capsys, *base)[0] == 0
    points = DragRecord.load(run_dir).data["points"]
    assert points[0]["photo"]["handle"] == list(map(float, MOUTH_RIGHT)) and len(points) == 11  # 1 + 10 brows
    mask_default = (run_dir / "drag" / "mask.png").read_bytes()
    assert cli(capsys, *base, "--mask-circle", "225,125,40")[0] == 0
    assert (run_dir / "drag" / "mask.png").read_bytes() != mask_default


def test_a_presets_recipe_in_batch_mode_uses_each_photos_landmarks(env, capsys):
    from align.record import AlignRecord
    from drag.presets import preset_drags
    from drag.record import DragRecord

    recipe = _preset_recipe(env, presets={"smile": 0.5})
    outdir = env["tmp"] / "outs"
    outdir.mkdir()
    photos = [PORTRAIT, mirrored_portrait(env["tmp"])]
    code, stdout, err = cli(capsys, "edit", *map(str, photos), "--recipe", str(recipe), "-o", str(outdir))
    assert code == 0, err
    assert len(stdout.split()) == 2 and all(Path(p).is_file() for p in stdout.split())
    runs = sorted((env["home"] / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        align = AlignRecord.load(run)
        handles, _ = preset_drags(align.aligned_landmarks, {"smile": 0.5}, align.size)
        np.testing.assert_allclose([p["aligned"]["handle"] for p in DragRecord.load(run).data["points"]], handles)
        assert DragRecord.load(run).presets["amounts"] == {"smile": 0.5}
