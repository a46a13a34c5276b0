"""The photo blend keeps its promises: the photo's own pixels, moved by the edit, untouched elsewhere.

Fast tests on a synthetic textured photo with a known similarity crop and a known motion (no
shared data needed), then the benchmark's known-answer edit on a real shared photo.
"""

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import NO_SHARED, TOM
from pipeline.composite import (
    composite_edit,
    display_matrix,
    estimate_motion,
    motion_stats,
    transfer_edit,
)

ROOT = Path(__file__).resolve().parents[1]
S = 128  # the "generator" resolution of these tests


def load_benchmark():
    """benchmarks/composite.py as a module: the tests use its known-answer edit and metrics."""
    spec = importlib.util.spec_from_file_location("composite_benchmark", ROOT / "benchmarks" / "composite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


def textured_photo(h=360, w=420, seed=0) -> np.ndarray:
    """Fine random texture over soft shapes: detail at the photo's resolution that a 128 px crop lacks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(x / 37 + c) * np.cos(y / 29 - c) for c in range(3)], axis=2)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 0.8) * 40
    return np.clip(base + fine, 0, 255).astype(np.uint8)


def crop_matrix(scale=0.5, angle_deg=0.0, centre=(210.0, 180.0)) -> np.ndarray:
    """photo -> aligned: a similarity putting `centre` at the middle of the S x S crop."""
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    t = np.array([S / 2, S / 2]) - r @ np.asarray(centre)
    return np.array([[r[0, 0], r[0, 1], t[0]], [r[1, 0], r[1, 1], t[1]], [0, 0, 1.0]])


def reconstruction_of(photo, matrix, bench) -> np.ndarray:
    """The photo's crop as a generator would render it: aligned, without the finest detail."""
    smooth = cv2.GaussianBlur(photo, (0, 0), 1.0)
    aligned = cv2.warpAffine(smooth, matrix[:2], (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return bench.remove_detail(aligned)


def bump(centre, shift, sigma, flat=0.0) -> np.ndarray:
    """Backward field (aligned px) of content moving by `shift` around `centre`: edited(a) = recon(a - shift w(a)).
    `flat` > 0 gives a plateau of that radius where the motion is an exact translation."""
    x, y = np.meshgrid(np.arange(S, dtype=np.float32), np.arange(S, dtype=np.float32))
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2)
    w = np.exp(-(np.maximum(r - flat, 0) ** 2) / (2 * sigma**2))
    return -np.stack([shift[0] * w, shift[1] * w], axis=2).astype(np.float32)


def known(photo, matrix, g, bench, layer=None, alpha=None):
    """(reconstruction, edited, right answer, true motion in aligned px at each photo pixel)."""
    recon = reconstruction_of(photo, matrix, bench)
    edited = bench.remap(recon, g).astype(np.float32)
    if alpha is not None:
        edited = edited * (1 - alpha[..., None]) + layer * alpha[..., None]
    edited = np.clip(np.rint(edited), 0, 255).astype(np.uint8)
    answer, _, _, motion = bench.right_answer(photo, matrix, dict(g=g, alpha=alpha, layer=layer))
    return recon, edited, answer, motion


def test_a_known_translation_moves_the_photo_the_right_way(bench):
    """Content moved right and down by (3, 2) aligned px shows moved by (6, 4) photo px (2 per aligned px)."""
    photo, m = textured_photo(), crop_matrix(scale=0.5)
    g = bump((64, 64), (3.0, 2.0), sigma=10, flat=18)
    recon, edited, _, _ = known(photo, m, g, bench)
    out = transfer_edit(photo, m, recon, edited)
    # the plateau's centre (aligned 64, 64) is photo (210, 180): there out(x) = photo(x - (6, 4))
    y0, x0 = 180, 210
    window = out[y0 - 10 : y0 + 10, x0 - 10 : x0 + 10].astype(np.float64)
    errors = {
        (dx, dy): np.abs(window - photo[y0 - 10 - dy : y0 + 10 - dy, x0 - 10 - dx : x0 + 10 - dx]).mean()
        for dx in range(-8, 9)
        for dy in range(-8, 9)
    }
    best = min(errors, key=errors.get)
    assert best == (6, 4), best
    assert errors[best] < 3.0 < errors[(0, 0)]


def test_a_rotated_crop_recovers_a_smooth_motion_with_the_photos_sharpness(bench):
    photo, m = textured_photo(), crop_matrix(scale=0.45, angle_deg=17)
    g = bump((70, 58), (2.5, -2.0), sigma=12)
    recon, edited, answer, motion = known(photo, m, g, bench)
    result = composite_edit(photo, m, recon, edited, "photo")
    moved = motion > 0.1
    assert moved.sum() > 2000
    assert bench.psnr(result.image, answer, moved) >= 36
    sharp = bench.laplacian_var(result.image, moved) / bench.laplacian_var(answer, moved)
    assert sharp >= 0.9
    # the generator's paste of the same edit loses the photo's detail: the test can tell them apart
    around = [(x, y) for x in (50, 70, 90) for y in (40, 58, 76)]  # the paste's mask: discs around points
    paste = composite_edit(photo, m, recon, edited, "generator", points=around).composite
    pasted = moved & (paste.mask > 0.99)
    assert pasted.sum() > 1000
    assert bench.laplacian_var(paste.image, pasted) / bench.laplacian_var(answer, pasted) < 0.5
    assert bench.psnr(paste.image, answer, pasted) < bench.psnr(result.image, answer, pasted) - 6
    # the record's motion: the largest is the known one in photo px (1 / 0.45 per aligned px), within 15%
    stats, true = motion_stats(result.motion, m), math.hypot(2.5, 2.0) / 0.45
    assert abs(stats["max_px"] - true) < 0.15 * true


def test_pixels_the_edit_did_not_change_are_the_photos_bytes(bench):
    photo, m = textured_photo(), crop_matrix()
    recon = reconstruction_of(photo, m, bench)
    np.testing.assert_array_equal(transfer_edit(photo, m, recon, recon), photo)
    # noise under the generator's level changes nothing either
    rng = np.random.default_rng(1)
    noisy = np.clip(np.rint(recon + rng.normal(0, 0.8, recon.shape)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(transfer_edit(photo, m, recon, noisy), photo)
    # a local edit touches a region sized by the edit, not the crop; the rest is byte for byte
    g = bump((40, 90), (2.0, 0.0), sigma=6)
    _, edited, _, motion = known(photo, m, g, bench)
    result = composite_edit(photo, m, recon, edited, "photo")
    touched = result.composite.mask > 0
    assert touched.sum() < 0.25 * (S / 0.5) ** 2  # well under the crop's area in photo pixels
    np.testing.assert_array_equal(result.image[~touched], photo[~touched])
    assert (motion[~touched] < 0.05).all()  # what was left untouched moved by under a twentieth of a pixel


def test_new_content_comes_from_the_edited_image(bench):
    photo, m = textured_photo(), crop_matrix()
    g = bump((64, 64), (1.5, 0.0), sigma=10)
    x, y = np.meshgrid(np.arange(S), np.arange(S))
    alpha = cv2.GaussianBlur((((x - 64) / 14.0) ** 2 + ((y - 70) / 5.0) ** 2 <= 1).astype(np.float32), (0, 0), 0.8)
    layer = np.full((S, S, 3), (240, 240, 225), np.float32)
    recon, edited, answer, _ = known(photo, m, g, bench, layer, alpha)
    out = transfer_edit(photo, m, recon, edited)
    core = bench.right_answer(photo, m, dict(g=g, alpha=alpha, layer=layer))[2] > 0.9
    assert core.sum() > 200
    assert np.abs(out[core].astype(float) - (240, 240, 225)).mean() < 20  # the patch shows
    assert np.abs(photo[core].astype(float) - (240, 240, 225)).mean() > 60  # and it was not there before


def test_live_frames_at_display_size_match_the_full_size_composite(bench):
    photo, m = textured_photo(), crop_matrix(scale=0.5, angle_deg=-8)
    g = bump((64, 64), (2.0, 1.0), sigma=10)
    recon, edited, _, _ = known(photo, m, g, bench)
    full = transfer_edit(photo, m, recon, edited)
    size = (photo.shape[1] // 2, photo.shape[0] // 2)
    small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    live = transfer_edit(small, display_matrix(m, (photo.shape[1], photo.shape[0]), size), recon, edited)
    expected = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
    assert bench.psnr(live, expected, np.ones(live.shape[:2], bool)) > 38


def test_mismatched_images_are_refused():
    from common.errors import UsageError

    with pytest.raises(UsageError, match="not one square size"):
        estimate_motion(np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))


def test_a_real_photo_keeps_its_promises_at_256(bench):
    """The benchmark's known-answer edits on the shared portrait, at the smallest generator size."""
    if not TOM.exists():
        pytest.skip(NO_SHARED)
    from align.align import align_face
    from common.images import load_photo

    photo = load_photo(TOM).rgb
    res = align_face(photo, size=256)
    smile = bench.measure(photo, res, "smile")
    assert smile["photo"]["psnr_face_db"] >= 33
    assert smile["photo"]["sharpness_face"] >= 0.9 and smile["photo"]["sharpness_moved"] >= 0.9
    assert smile["photo"]["far_kept_exactly"] >= 0.99
    assert smile["generator"]["far_kept_exactly"] < 0.5  # the whole-face paste replaces them
    teeth = bench.measure(photo, res, "new_content")
    assert teeth["photo"]["patch_shown"] >= 0.8


# the choice and the record: recipes, the command line, composite.json ------------------------
def test_recipes_carry_the_blend_and_refuse_unknown_ones(tmp_path):
    from common.errors import UsageError
    from pipeline.recipe import parse_recipe

    drags = [{"handle": [10, 10], "target": [12, 12]}]
    assert parse_recipe({"drags": drags}).blend == "photo"
    recipe = parse_recipe({"drags": drags, "composite": {"blend": "generator"}})
    assert recipe.blend == "generator" and recipe.to_json()["composite"] == {"blend": "generator"}
    assert parse_recipe(recipe.to_json()).blend == "generator"  # round trip
    from inversion.config import make_config

    assert recipe.as_ran(tmp_path / "p.jpg", "ffhq-512", make_config())["composite"] == {"blend": "generator"}
    for bad, message in (({"blend": "paint"}, "composite.blend"), ({"mode": "photo"}, "unknown")):
        with pytest.raises(UsageError, match=message):
            parse_recipe({"drags": drags, "composite": bad})


def test_blend_is_an_option_of_edit_composite_and_serve(capsys):
    from helpers import cli

    for command in ("edit", "composite", "serve"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0 and "--blend [photo|generator]" in out, command
    code, _, err = cli(capsys, "composite", "run", "-o", "o.jpg", "--blend", "paint")
    assert code == 2 and "paint" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_edit_records_the_blend_and_composite_reblends(env, capsys):
    import json

    from PIL import Image

    from helpers import DRAG, PORTRAIT, cli, run

    run_dir, out = env["tmp"] / "run", env["tmp"] / "out.png"
    argv = ["--device", "cpu", "edit", str(PORTRAIT), "--recipe", str(env["recipe"]()), "-o", str(out)]
    code, _, err = run([*argv, "--run-dir", str(run_dir)], capsys)  # not --quiet: the summary is printed
    assert code == 0, err
    assert "composite: photo blend:" in err and "identity distance, photo vs output photo" in err
    record = json.loads((run_dir / "composite" / "composite.json").read_text())
    assert record["blend"] == "photo"
    assert {"changed_pixels", "mask_pixels", "motion", "identity"} <= set(record) and record["changed_pixels"] > 0
    assert {"max_px", "mean_px"} <= set(record["motion"]) and record["motion"]["max_px"] >= record["motion"]["mean_px"]
    assert record["identity"]["compared"].startswith("input photo vs output photo")
    photo, edited = np.asarray(Image.open(PORTRAIT).convert("RGB")), np.asarray(Image.open(out))
    assert record["changed_pixels"] == int((photo != edited).any(axis=2).sum())
    assert (run_dir / "composite" / "changed.png").is_file()
    assert json.loads((run_dir / "recipe.json").read_text())["composite"] == {"blend": "photo"}
    # the stage command re-blends the same run the other way, and says so in its record
    other = env["tmp"] / "generator.png"
    code, _, err = cli(capsys, "composite", str(run_dir), "-o", str(other), "--blend", "generator")
    assert code == 0, err
    record = json.loads((run_dir / "composite" / "composite.json").read_text())
    assert record["blend"] == "generator" and "edited_face_found" in record
    assert not np.array_equal(np.asarray(Image.open(other)), edited)
    # --blend on edit goes into the recipe the run keeps
    drag = DRAG
    args = ["edit", str(PORTRAIT), "--model", str(env["model"]), "--drag", drag, "--steps", "2", "--blend", "generator"]
    args += ["--projection-steps", "4", "--tuning-steps", "2", "--lpips-threshold", "0"]
    code, _, err = cli(capsys, *args, "-o", str(env["tmp"] / "g.png"), "--run-dir", str(run_dir))
    assert code == 0, err
    assert json.loads((run_dir / "recipe.json").read_text())["composite"] == {"blend": "generator"}
    assert json.loads((run_dir / "composite" / "composite.json").read_text())["blend"] == "generator"
