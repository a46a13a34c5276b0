"""Edits by name: drags and masks derived from real landmarks, checked against hand-computed positions."""

import json

import numpy as np
import pytest
from PIL import Image

from common.errors import UsageError
from common.run import locked_run
from drag.presets import PRESETS, parse_preset, parse_presets, preset_drags, preset_mask, preset_motion
from helpers import PORTRAIT, random_lpips, tiny_generator, write_nvidia_pickle
from inversion.seed import run_seed
from pipeline.seeded import face_landmarks
from run_pipeline import main
from weights.models import ChosenModel

SIZE = 256


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with the align stage of a real photo at 256 px (the only slow step, done once)."""
    from align.stage import run_align

    run = tmp_path_factory.mktemp("run")
    run_align(PORTRAIT, run, size=SIZE)
    return run


@pytest.fixture(scope="module")
def lm(run_dir):
    """The 68 landmarks in aligned pixels, mapped by hand from align.json (photo pixels + matrix)."""
    rec = json.loads((run_dir / "align" / "align.json").read_text())
    m = np.array(rec["matrix"])
    pts = np.array(rec["landmarks"])
    return pts @ m[:2, :2].T + m[:2, 2]


def axes(lm):
    """IOD and the face's axes, written out independently of drag.presets."""
    left = lm[36:42].sum(0) / 6
    right = lm[42:48].sum(0) / 6
    iod = np.hypot(*(right - left))
    ex = (right - left) / iod
    return iod, ex, np.array([-ex[1], ex[0]])


def one_line_error(fn, *args):
    with pytest.raises(UsageError) as exc:
        fn(*args)
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def at(mask, p):
    x, y = np.rint(p).astype(int)
    return mask[y, x]


def test_the_face_is_the_expected_size_and_upright(lm):
    iod, ex, ey = axes(lm)
    assert 50 < iod < 80  # FFHQ crop: the eyes are about a quarter of the width apart
    assert ex[0] > 0.98 and ey[1] > 0.98


def test_smile_matches_hand_computed_corners(lm):
    iod, ex, ey = axes(lm)
    handles, targets = preset_drags(lm, {"smile": 0.5}, SIZE)
    k = 0.5 * 0.08 * iod  # docs: corners move 0.08 IOD outward and 0.08 IOD up per unit amount
    np.testing.assert_allclose(handles, lm[[48, 54]], atol=1e-9)
    np.testing.assert_allclose(targets[0], lm[48] - k * ex - k * ey, atol=1e-9)
    np.testing.assert_allclose(targets[1], lm[54] + k * ex - k * ey, atol=1e-9)
    # in image terms on this upright face: left corner goes left and up, right corner right and up
    d = targets - handles
    assert d[0, 0] < -2 and d[0, 1] < -2 and d[1, 0] > 2 and d[1, 1] < -2


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mouth_open", {57: (0, 0.25), 66: (0, 0.25), 51: (0, -0.06), 62: (0, -0.06)}),
        ("eyes_open", {37: (0, -0.06), 38: (0, -0.06), 43: (0, -0.06), 44: (0, -0.06)}),
        ("eyebrows", {i: (0, -0.10) for i in range(17, 27)}),
        ("jaw_width", {**{i: (-0.08, 0) for i in range(3, 7)}, **{i: (0.08, 0) for i in range(10, 14)}}),
        ("head_yaw", {27: (0.05, 0), 30: (0.12, 0), 33: (0.10, 0), 51: (0.08, 0), 57: (0.08, 0), 8: (0.08, 0)}),
        ("head_pitch", {30: (0, -0.10), 33: (0, -0.10), 51: (0, -0.08), 57: (0, -0.08), 8: (0, -0.08)}),
    ],
)
def test_each_preset_matches_its_documented_motion(lm, name, expected):
    iod, ex, ey = axes(lm)
    amount = 0.7
    handles, targets = preset_drags(lm, {name: amount}, SIZE)
    assert len(handles) == len(expected)
    for h, t, (i, (du, dv)) in zip(handles, targets, expected.items()):
        np.testing.assert_allclose(h, lm[i], atol=1e-9)
        np.testing.assert_allclose(t, lm[i] + amount * iod * (du * ex + dv * ey), atol=1e-9)


def test_amounts_scale_linearly_and_flip_with_sign(lm):
    for name in PRESETS:
        h1, t1 = preset_drags(lm, {name: 1.0}, SIZE)
        h5, t5 = preset_drags(lm, {name: 0.5}, SIZE)
        hm, tm = preset_drags(lm, {name: -0.5}, SIZE)
        np.testing.assert_allclose(h1, h5)
        np.testing.assert_allclose(h1, hm)
        np.testing.assert_allclose(t1 - h1, 2 * (t5 - h5), atol=1e-9)
        np.testing.assert_allclose(tm - hm, -(t5 - h5), atol=1e-9)
        assert np.linalg.norm(t1 - h1, axis=1).max() > 3  # a visible motion at amount 1 at 256 px


def test_motion_follows_the_face_axes_and_scale(lm):
    """A rotated, enlarged face gets the same drags rotated and enlarged (face axes, IOD units)."""
    a = np.deg2rad(12)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.array([SIZE / 2, SIZE / 2])
    moved = (lm - c) @ rot.T * 1.5 + c * 1.5 + 20
    h0, t0 = preset_drags(lm, {"smile": 0.8, "eyebrows": -0.5}, SIZE)
    h1, t1 = preset_drags(moved, {"smile": 0.8, "eyebrows": -0.5}, int(SIZE * 1.5) + 40)
    np.testing.assert_allclose(t1 - h1, 1.5 * (t0 - h0) @ rot.T, atol=1e-9)


def test_zero_amount_moves_nothing(lm):
    h, t = preset_drags(lm, {"smile": 0.0}, SIZE)
    assert h.shape == (0, 2) and t.shape == (0, 2)
    h, t = preset_drags(lm, {"smile": 0.0, "eyebrows": 0.4}, SIZE)
    np.testing.assert_allclose(h, lm[17:27])


def test_combined_presets_sum_on_shared_landmarks(lm):
    iod, ex, ey = axes(lm)
    h, t = preset_drags(lm, {"smile": 0.5, "eyebrows": 0.3}, SIZE)
    assert len(h) == 2 + 10
    hs, ts = preset_drags(lm, {"smile": 0.5}, SIZE)
    hb, tb = preset_drags(lm, {"eyebrows": 0.3}, SIZE)
    np.testing.assert_allclose(np.concatenate([hs, hb]), h)
    np.testing.assert_allclose(np.concatenate([ts, tb]), t)
    # 51 and 57 are moved by both mouth_open and head_yaw: one handle each, motions added
    h, t = preset_drags(lm, {"mouth_open": 0.5, "head_yaw": -0.5}, SIZE)
    idx = [int(np.argmin(np.linalg.norm(lm - p, axis=1))) for p in h]
    assert sorted(idx) == sorted({57, 66, 51, 62, 27, 30, 33, 8})
    j = idx.index(57)
    np.testing.assert_allclose(t[j], lm[57] + 0.5 * iod * (0.25 * ey) - 0.5 * iod * (0.08 * ex), atol=1e-9)


def test_motion_of_one_preset_for_the_requested_table(lm):
    iod, _, _ = axes(lm)
    idx, disp = preset_motion(lm, "eyebrows", 0.5)
    assert idx.tolist() == list(range(17, 27))
    np.testing.assert_allclose(np.linalg.norm(disp, axis=1), 0.05 * iod)


def test_default_mask_covers_the_drags_and_leaves_the_far_side(lm):
    eyes = [lm[36:42].mean(0), lm[42:48].mean(0)]
    mouth = lm[62]
    far = {  # points each preset's mask must leave alone
        "smile": eyes + [lm[19], lm[24], lm[30], lm[8], lm[0], lm[16]],
        "mouth_open": eyes + [lm[19], lm[24], lm[0], lm[16]],
        "eyes_open": [mouth, lm[30], lm[8], lm[0], lm[16]],
        "eyebrows": eyes + [mouth, lm[30], lm[8]],
        "jaw_width": eyes + [mouth, lm[30], lm[19], lm[24]],
        "head_yaw": [np.array([2, 2]), np.array([SIZE - 3, 2]), np.array([2, SIZE - 3])],
        "head_pitch": [np.array([2, 2]), np.array([SIZE - 3, 2]), np.array([2, SIZE - 3])],
    }
    assert set(far) == set(PRESETS)
    for name, outside in far.items():
        mask = preset_mask(lm, [name], SIZE)
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, 1.0}
        for amount in (1.0, -1.0):
            h, t = preset_drags(lm, {name: amount}, SIZE)
            assert all(at(mask, p) == 1 for p in np.concatenate([h, t])), name
        assert all(at(mask, p) == 0 for p in outside), name
        assert mask.mean() < 0.4, name
    both = preset_mask(lm, ["smile", "eyebrows"], SIZE)
    expected = np.maximum(preset_mask(lm, ["smile"], SIZE), preset_mask(lm, ["eyebrows"], SIZE))
    np.testing.assert_array_equal(both, expected)


@pytest.mark.parametrize(
    "amounts, words",
    [
        ({"frown": 0.5}, ["unknown preset 'frown'", *PRESETS]),
        ({"smile": float("nan")}, ["smile", "finite"]),
        ({"smile": float("inf")}, ["smile", "finite"]),
        ({"smile": 1.5}, ["smile", "1.5", "-1..1"]),
        ({"eyebrows": -1.01}, ["eyebrows", "-1..1"]),
        ({"smile": "0.5"}, ["smile", "number"]),
        ({"smile": True}, ["smile", "number"]),
        ({"smile": 0.001}, ["smile", "half a pixel"]),
    ],
)
def test_bad_amounts_are_one_line_errors(lm, amounts, words):
    msg = one_line_error(preset_drags, lm, amounts, SIZE)
    for w in words:
        assert w in msg


def test_landmarks_off_the_crop_are_refused(lm):
    edge = lm - lm[48] + np.array([1.0, 120.0])  # the left mouth corner one pixel from the left edge
    assert "the target of landmark 48" in one_line_error(preset_drags, edge, {"smile": 0.5}, SIZE)
    preset_drags(edge, {"smile": -0.5}, SIZE)  # inward the target stays inside: no error
    msg = one_line_error(preset_drags, lm - lm[48] - 3, {"smile": 0.2}, SIZE)
    assert msg.startswith("landmark 48 at (-3.0, -3.0) is outside the 256x256 face crop")
    assert "68" in one_line_error(preset_drags, lm[:67], {"smile": 0.5}, SIZE)


def test_parse_preset():
    assert parse_preset("smile=0.5") == ("smile", 0.5)
    assert parse_preset(" head_yaw = -1 ") == ("head_yaw", -1.0)
    assert parse_presets(["smile=0.5", "eyebrows=-0.3"]) == {"smile": 0.5, "eyebrows": -0.3}
    assert "NAME=AMOUNT" in one_line_error(parse_preset, "smile")
    assert "NAME=AMOUNT" in one_line_error(parse_preset, "=0.5")
    assert "not a number" in one_line_error(parse_preset, "smile=abc")
    assert "finite" in one_line_error(parse_preset, "smile=nan")
    assert "-1..1" in one_line_error(parse_preset, "smile=2")
    assert "jaw_width" in one_line_error(parse_preset, "grin=0.5")
    assert "twice" in one_line_error(parse_presets, ["smile=0.5", "smile=0.2"])


def cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(["--quiet", *argv], lpips=random_lpips)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_lists_every_preset(capsys):
    code, out, err = cli(capsys, "presets")
    assert code == 0 and not err
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)
    assert "landmarks 48,54" in lines[0] and "IOD" in lines[0]


def test_cli_preview_draws_mask_and_arrows(run_dir, capsys):
    out_png = run_dir / "presets_preview.png"
    code, out, err = cli(
        capsys, "presets", "--preview", str(run_dir), "--preset", "smile=0.5", "--preset", "eyebrows=0.3"
    )
    assert code == 0, err
    assert out.strip() == str(out_png)
    img = np.asarray(Image.open(out_png).convert("RGB")).astype(int)
    aligned = np.asarray(Image.open(run_dir / "align" / "aligned.png").convert("RGB")).astype(int)
    zoom = img.shape[0] // SIZE
    assert img.shape == (SIZE * zoom, SIZE * zoom, 3)
    same = aligned.repeat(zoom, 0).repeat(zoom, 1)
    mask = preset_mask(json_lm(run_dir), ["smile", "eyebrows"], SIZE).repeat(zoom, 0).repeat(zoom, 1) > 0
    assert (img[~mask] == same[~mask]).all()  # outside the mask: the aligned face untouched
    assert (img[mask] != same[mask]).any(axis=-1).mean() > 0.9  # inside: tinted, arrows drawn
    assert not list(run_dir.glob(".presets_preview*"))


def json_lm(run_dir):
    rec = json.loads((run_dir / "align" / "align.json").read_text())
    m = np.array(rec["matrix"])
    return np.array(rec["landmarks"]) @ m[:2, :2].T + m[:2, 2]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--preset", "smile=2"], "-1..1"),
        (["--preset", "smile=nan"], "finite"),
        (["--preset", "grin=0.5"], "known presets"),
        (["--preset", "smile"], "NAME=AMOUNT"),
        ([], "at least one --preset"),
    ],
)
def test_cli_bad_presets_exit_2_with_one_line(run_dir, tmp_path, capsys, args, words):
    target = tmp_path / "run"
    (target / "align").mkdir(parents=True)
    for f in ("align.json", "aligned.png"):
        (target / "align" / f).write_bytes((run_dir / "align" / f).read_bytes())
    code, out, err = cli(capsys, "presets", "--preview", str(target), *args)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("photodrag: error: ") and words in err
    assert not (target / "presets_preview.png").exists()


def test_cli_preview_needs_an_aligned_run(tmp_path, capsys):
    code, _, err = cli(capsys, "presets", "--preview", str(tmp_path), "--preset", "smile=0.5")
    assert code == 2 and "photodrag align" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "presets", "--preset", "smile=0.5")
    assert code == 2 and "--preview" in err


def test_cli_preview_refuses_a_run_without_landmarks(run_dir, tmp_path, capsys):
    (tmp_path / "align").mkdir()
    rec = json.loads((run_dir / "align" / "align.json").read_text())
    del rec["landmarks"]
    (tmp_path / "align" / "align.json").write_text(json.dumps(rec))
    (tmp_path / "align" / "aligned.png").write_bytes((run_dir / "align" / "aligned.png").read_bytes())
    code, _, err = cli(capsys, "presets", "--preview", str(tmp_path), "--preset", "smile=0.5")
    assert code == 2 and "no landmarks" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "presets_preview.png").exists()


# wiring: stacking with explicit drags, the default mask, the measurement, recipes ---------------
def test_add_preset_drags_stacks_after_explicit_drags_and_uses_the_default_mask(lm):
    from drag.presets import add_preset_drags

    explicit = np.array([[[100.0, 100.0], [110.0, 95.0]]])
    pts, mask = add_preset_drags(explicit, None, lm, {"smile": 0.5}, SIZE)
    handles, targets = preset_drags(lm, {"smile": 0.5}, SIZE)
    np.testing.assert_array_equal(pts[0], explicit[0])
    np.testing.assert_allclose(pts[1:, 0], handles)
    np.testing.assert_allclose(pts[1:, 1], targets)
    smile_only = preset_mask(lm, ["smile"], SIZE)
    assert (mask >= smile_only).all() and at(mask, (100, 100)) == 1 and at(mask, (110, 95)) == 1
    given = np.zeros((SIZE, SIZE), np.float32)
    assert add_preset_drags(explicit, given, lm, {"smile": 0.5}, SIZE)[1] is given  # a given mask overrides
    assert "nothing to drag" in one_line_error(add_preset_drags, np.zeros((0, 2, 2)), None, lm, {"smile": 0.0}, SIZE)
    clash = np.array([[lm[48], lm[48] + 5]])
    assert "one target" in one_line_error(add_preset_drags, clash, None, lm, {"smile": 0.5}, SIZE)


def test_preset_order_does_not_change_the_drags(lm):
    a = preset_drags(lm, {"smile": 0.5, "eyebrows": 0.3}, SIZE)
    b = preset_drags(lm, {"eyebrows": 0.3, "smile": 0.5}, SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_measure_presets_projects_the_achieved_motion_on_the_requested_direction(lm):
    from drag.presets import measure_presets

    iod, _, _ = axes(lm)
    idx, disp = preset_motion(lm, "smile", 0.5)
    req = np.linalg.norm(disp, axis=1).mean()
    half = lm.copy()
    half[idx] += 0.5 * disp
    (m,) = measure_presets(lm, half, {"smile": 0.5})
    assert m.requested_px == pytest.approx(req, abs=1e-3) and m.requested_iod == pytest.approx(req / iod, abs=1e-4)
    assert m.achieved_px == pytest.approx(0.5 * req, abs=1e-3)  # half-way there
    assert m.achieved_iod == pytest.approx(0.5 * req / iod, abs=1e-4)
    np.testing.assert_allclose(m.achieved_vector_px, (0.5 * disp).mean(0), atol=1e-3)
    across = lm.copy()  # moved at right angles to the request: nothing achieved along it
    across[idx] += 3 * np.stack([-disp[:, 1], disp[:, 0]], axis=1) / np.linalg.norm(disp, axis=1)[:, None]
    (m,) = measure_presets(lm, across, {"smile": 0.5})
    assert m.achieved_px == pytest.approx(0.0, abs=1e-6) and np.abs(m.achieved_vector_px).sum() > 0
    (m,) = measure_presets(lm, half, {"smile": -0.5})  # moved the other way than asked: negative
    assert m.achieved_px == pytest.approx(-0.5 * req, abs=1e-3) and m.requested_px == pytest.approx(req, abs=1e-3)


@pytest.mark.parametrize(
    "presets, words",
    [
        ({"grin": 0.5}, "known presets"),
        ({"smile": "0.5"}, "must be a number"),
        ({"smile": 1.5}, "-1..1"),
        ({"smile": True}, "must be a number"),
        ({"smile": 0}, "nothing to drag"),
        ([["smile", 0.5]], '"presets" must be an object'),
    ],
)
def test_recipe_presets_are_validated(presets, words):
    from pipeline.recipe import parse_recipe

    assert words in one_line_error(parse_recipe, {"presets": presets})


def test_recipe_presets_round_trip_and_make_drags_optional():
    from pipeline.recipe import parse_recipe

    r = parse_recipe({"presets": {"smile": 0.5, "eyebrows": -0.2}})
    assert r.drags == () and r.presets == {"smile": 0.5, "eyebrows": -0.2} and r.presets_only
    assert parse_recipe(json.loads(json.dumps(r.to_json()))) == r
    mixed = parse_recipe({"presets": {"smile": 0.5}, "drags": [{"handle": [1, 2], "target": [3, 4]}]})
    assert not mixed.presets_only and mixed.drags
    assert "drags" in one_line_error(parse_recipe, {})


def test_drag_with_a_preset_refuses_a_run_without_landmarks(run_dir, tmp_path, capsys):
    (tmp_path / "align").mkdir()
    rec = json.loads((run_dir / "align" / "align.json").read_text())
    del rec["landmarks"]
    (tmp_path / "align" / "align.json").write_text(json.dumps(rec))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = cli(capsys, "drag", str(tmp_path), "--preset", "smile=0.5")
    assert code == 2 and not out and "no landmarks" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    code, _, err = cli(capsys, "drag", str(tmp_path))
    assert code == 2 and "--preset" in err


def test_preset_report_detects_the_landmarks_again_and_the_record_prints_the_table(run_dir, lm):
    """On the unedited aligned face the achieved motion is about 0; the requested one is the formula's."""
    from drag.presets import preset_report
    from drag.record import DragRecord
    from drag.stage import landmarks_again

    aligned = np.asarray(Image.open(run_dir / "align" / "aligned.png").convert("RGB"))
    report = preset_report(lm, aligned, {"smile": 0.5, "eyebrows": -0.3}, landmarks_again)
    assert report["face_found"] and set(report["measured"]) == {"smile", "eyebrows"}
    _, disp = preset_motion(lm, "smile", 0.5)
    smile = report["measured"]["smile"]
    assert smile["requested"]["px"] == pytest.approx(np.linalg.norm(disp, axis=1).mean(), abs=1e-3)
    assert abs(smile["achieved"]["px"]) < 2.0  # dlib's landmarks on the same image: no motion to speak of
    lines = DragRecord({"presets": report}).preset_table()
    assert lines[0].split() == ["preset", "amount", "requested", "achieved"]
    assert lines[1].split()[:2] == ["smile", "0.50"] and lines[2].split()[:2] == ["eyebrows", "-0.30"]
    blank = np.zeros_like(aligned)
    missed = preset_report(lm, blank, {"smile": 0.5}, landmarks_again)
    assert missed["face_found"] is False and "not measured" in missed["note"]
    assert "no face detected again" in DragRecord({"presets": missed}).preset_table()[0]
    assert DragRecord({}).preset_table() == []


def _seed_run(folder, find_landmarks, subject=None, name=None):
    """A seed run (inversion/seed.py) of a 256 px random-weight generator; `find_landmarks` is the
    seed stage's face finder (a random generator draws no face of its own)."""

    G = tiny_generator(res=SIZE, dim=32)
    model = write_nvidia_pickle(folder / "g.pkl", G)
    chosen = ChosenModel(name or str(model), model, "sha", SIZE)
    with locked_run(folder / "run", create=True):
        run_seed(folder / "run", G, chosen, 3, 0.7, subject=subject, find_landmarks=find_landmarks)
    return folder / "run"


def test_cli_preview_on_a_seed_run_draws_on_the_generated_picture(run_dir, lm, tmp_path, capsys):
    """A seed run's preview is drawn on its generated picture with the landmarks its seed stage found
    (here dlib's, pipeline.seeded.face_landmarks, on the portrait's aligned face: the same detector and
    the same record drag's presets on a seed run use); no align.json is needed."""
    face = np.asarray(Image.open(run_dir / "align" / "aligned.png").convert("RGB"))
    seed_run = _seed_run(tmp_path, lambda picture: face_landmarks(face))
    assert not (seed_run / "align").exists()
    code, out, err = cli(capsys, "presets", "--preview", str(seed_run), "--preset", "smile=0.5")
    assert code == 0, err
    assert out.strip() == str(seed_run / "presets_preview.png")
    img = np.asarray(Image.open(seed_run / "presets_preview.png").convert("RGB")).astype(int)
    picture = np.asarray(Image.open(seed_run / "invert" / "reconstruction.png").convert("RGB")).astype(int)
    zoom = img.shape[0] // SIZE
    same = picture.repeat(zoom, 0).repeat(zoom, 1)
    marks = np.array(json.loads((seed_run / "invert" / "invert.json").read_text())["start"]["landmarks"])
    assert np.abs(marks - lm).max() < 3  # the landmarks the seed stage recorded: the face's
    mask = preset_mask(marks, ["smile"], SIZE).repeat(zoom, 0).repeat(zoom, 1) > 0
    assert (img[~mask] == same[~mask]).all()  # outside the mask: the generated picture untouched
    assert (img[mask] != same[mask]).any(axis=-1).mean() > 0.9


@pytest.mark.parametrize(
    "subject, words", [(None, "presets need a face, and none was found"), ("lions", "draws lions")]
)
def test_cli_preview_on_a_seed_run_without_a_face_is_refused_like_drag(tmp_path, capsys, subject, words):
    seed_run = _seed_run(
        tmp_path, face_landmarks if subject is None else None, subject, "lions-512" if subject else None
    )
    code, out, err = cli(capsys, "presets", "--preview", str(seed_run), "--preset", "smile=0.5")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (seed_run / "presets_preview.png").exists()
    code, _, drag_err = cli(capsys, "drag", str(seed_run), "--preset", "smile=0.5")
    assert code == 2 and drag_err == err  # the same line as drag's
