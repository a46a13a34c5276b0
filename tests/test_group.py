"""Every face of a group photo (issue 27): `--face all` / `--face 0,2`, each face in RUN/faces/N, one composite.

The rules (face choice, recipes) run without a model; the edits (marked slow) use the tiny generator and
random LPIPS on the shared group photos, and are skipped with the reason when ../shared is absent.
"""

import json
import re

import numpy as np
import pytest
from PIL import Image

from align.detect import Face
from align.group import MAX_UPSCALE, choose_faces, too_small
from common.errors import UsageError
from common.run import MARKER
from helpers import NO_SHARED, PHOTOS, cli, two_faces_photo
from pipeline.plan import parse_face, recipe_from_flags
from pipeline.recipe import parse_recipe

TWO, THREE, MANY = (PHOTOS / n for n in ("2008_001009.jpg", "2008_002506.jpg", "bald_guys.jpg"))
# the tiny generator's edits are faint: a full smile and a fast drag make them reach the photo
QUICK = {
    "invert": {"projection_steps": 2, "tuning_steps": 1, "lpips_threshold": 0.0},
    "drag": {"steps": 2, "lr": 0.05},
}


def face_at(x: float, y: float, side: float) -> Face:
    """A face whose landmarks fill its box (eyes at 0.3 of the height, mouth at 0.75): crop about 1.9 x side."""
    lm = np.zeros((68, 2))
    lm[:] = (x + side / 2, y + side / 2)
    lm[36:42] = (x + 0.3 * side, y + 0.3 * side)
    lm[42:48] = (x + 0.7 * side, y + 0.3 * side)
    lm[48], lm[54] = (x + 0.35 * side, y + 0.75 * side), (x + 0.65 * side, y + 0.75 * side)
    return Face((x, y, x + side, y + side), 1.0, lm)


# choosing the faces ----------------------------------------------------------------------------------
def test_all_skips_faces_under_the_floor_or_too_small_for_the_generator():
    faces = [face_at(0, 0, 100), face_at(200, 0, 40), face_at(400, 0, 70)]
    choice = choose_faces(faces, "all", size=64)
    assert choice.chosen == (0, 2) and set(choice.skipped) == {1}
    assert "under 64 px" in choice.skipped[1]
    # a 512 px generator: the 70 px face's crop (about 130 px) is upscaled about 4x
    crop = 512 / MAX_UPSCALE
    assert too_small(face_at(0, 0, 60), 512, 1) is not None and "512 px generator" in too_small(
        face_at(0, 0, 60), 512, 1
    )
    assert too_small(face_at(0, 0, crop), 512, 1) is None
    assert choose_faces(faces, "all", size=64, min_face=80).chosen == (0,)


def test_faces_asked_for_by_index_are_never_skipped_and_must_exist():
    faces = [face_at(0, 0, 100), face_at(200, 0, 30)]
    assert choose_faces(faces, (0, 1), size=64).chosen == (0, 1)  # the small one too: it was named
    with pytest.raises(UsageError, match=r"--face 5 is out of range: 2 face\(s\) found"):
        choose_faces(faces, (0, 5), size=64)
    with pytest.raises(UsageError, match="every face is too small"):
        choose_faces([face_at(0, 0, 30)], "all", size=64)
    with pytest.raises(UsageError, match="no face found"):
        choose_faces([], "all", size=64)


# recipes and flags ---------------------------------------------------------------------------------------
def test_face_flag_forms():
    assert parse_face("all") == "all" and parse_face("largest") == "largest"
    assert parse_face("2,0") == (0, 2) and parse_face("3") == 3
    for bad in ("0,0", "a", "1,", "-1"):
        with pytest.raises(UsageError, match="--face must be"):
            parse_face(bad)


def test_several_faces_refuse_pixel_drags_and_masks_but_take_presets():
    r = recipe_from_flags(None, [], {"smile": 0.5}, face="all", min_face=90)
    assert r.several_faces and r.face == "all" and r.min_face == 90
    assert r.for_face(2).face == 2 and r.for_face(2).presets == {"smile": 0.5} and not r.for_face(2).several_faces
    with pytest.raises(UsageError, match="pixel drags move one face"):
        recipe_from_flags(None, ["1,1:2,2"], {}, face="0,2")
    with pytest.raises(UsageError, match="a mask covers one face"):
        recipe_from_flags(None, [], {"smile": 0.5}, face="all", mask_circle="10,10,5")
    with pytest.raises(UsageError, match="min_face"):
        recipe_from_flags(None, [], {"smile": 0.5}, face="0,1", min_face=90)


def test_per_face_recipe_round_trips_and_gives_each_face_its_own_edit():
    drag = {"handle": [10, 10], "target": [12, 9]}
    data = {"presets": {"smile": 0.5}, "faces": {"0": {"drags": [drag]}, "2": {"presets": {"eyebrows": 0.3}}}}
    r = parse_recipe(data)
    assert r.face == (0, 2)  # "faces" alone names the faces
    assert r.for_face(0).drags == (((10.0, 10.0), (12.0, 9.0)),) and r.for_face(0).presets == {}
    assert r.for_face(2).presets == {"eyebrows": 0.3} and r.for_face(2).drags == ()
    assert parse_recipe(r.to_json()) == r
    assert not r.presets_only  # face 0's pixel drags do not fit an album
    every = parse_recipe(dict(data, align={"face": "all", "min_face": 70}))
    assert every.face == "all" and every.for_face(1).presets == {"smile": 0.5}
    assert parse_recipe(every.to_json()) == every
    single = parse_recipe({"presets": {"smile": 0.5}})
    assert "faces" not in single.to_json() and "min_face" not in single.to_json()["align"]


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"presets": {"smile": 0.5}, "drags": [{"handle": [1, 1], "target": [2, 2]}], "align": {"face": "all"}},
            "pixel drags move one face",
        ),
        (
            {"presets": {"smile": 0.5}, "faces": {"1": {"presets": {"smile": 0.2}}}, "align": {"face": 1}},
            '"faces" (per-face edits) needs several faces',
        ),
        ({"faces": {"x": {"presets": {"smile": 0.2}}}}, "face indices"),
        ({"faces": {"3": {"presets": {"smile": 0.2}}}, "align": {"face": [0, 1]}}, "face 3, which is not among"),
        ({"faces": {"0": {"colour": 1}}}, '"faces.0" must be an object'),
        ({"presets": {"smile": 0.5}, "align": {"face": [1, 1]}}, '"align.face" must be'),
    ],
)
def test_bad_several_face_recipes_are_one_line(data, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_recipe(data)


# edits on the shared group photos (tiny generator) -------------------------------------------------------
def group_recipe(env, **over) -> str:
    data = dict(QUICK, model=str(env["model"]), presets={"smile": 1.0})
    data.update(over)
    path = env["tmp"] / f"group{len(list(env['tmp'].glob('group*.json')))}.json"
    path.write_text(json.dumps(data))
    return str(path)


def edit(capsys, photo, recipe, out, run_dir, *flags):
    return cli(capsys, "edit", str(photo), "--recipe", recipe, "-o", str(out), "--run-dir", str(run_dir), *flags)


def composite_json(run_dir) -> dict:
    return json.loads((run_dir / "composite" / "composite.json").read_text())


def check_untouched_outside(photo, out, record) -> None:
    """Pixels outside every face's changed box are the input's; each face changed pixels inside its box."""
    a = np.asarray(Image.open(photo).convert("RGB"))
    b = np.asarray(Image.open(out).convert("RGB"))
    inside = np.zeros(a.shape[:2], bool)
    for f in record["faces"]:
        x0, y0, x1, y1 = f["changed_box"]
        inside[y0:y1, x0:x1] = True
        assert (a[y0:y1, x0:x1] != b[y0:y1, x0:x1]).any(), f"face {f['face']} changed nothing"
    np.testing.assert_array_equal(b[~inside], a[~inside])
    assert (a != b).any(axis=2).sum() == record["changed_pixels"]


@pytest.fixture
def counted(monkeypatch):
    """How often the photo is decoded and an output written (the group edit does each once)."""
    import align.stage
    import pipeline.composite
    import pipeline.edit
    import pipeline.group

    calls = {"decode": 0, "write": 0}

    def count(name, real):
        def wrapped(*a, **k):
            calls[name] += 1
            return real(*a, **k)

        return wrapped

    for mod in (pipeline.edit, align.stage, pipeline.composite):
        monkeypatch.setattr(mod, "load_photo", count("decode", mod.load_photo))
    monkeypatch.setattr(pipeline.group, "save_like", count("write", pipeline.group.save_like))
    return calls


@pytest.mark.slow
def test_three_faces_one_output_decoded_and_written_once_then_all_reused(env, capsys, counted):
    if not THREE.exists():
        pytest.skip(NO_SHARED)
    run_dir, out = env["tmp"] / "run", env["tmp"] / "three.png"
    recipe = group_recipe(env)
    code, stdout, err = edit(capsys, THREE, recipe, out, run_dir, "--face", "all")
    assert code == 0, err
    assert stdout.strip() == str(out) and counted == {"decode": 1, "write": 1}
    record = composite_json(run_dir)
    assert [f["face"] for f in record["faces"]] == record["order"] == [0, 1, 2] and record["skipped"] == []
    for f in record["faces"]:
        assert (run_dir / "faces" / str(f["face"]) / "drag" / "edited.png").is_file()
        assert f["stages"] == {"align": "ran", "invert": "ran", "drag": "ran"}
        assert f["presets"]["amounts"] == {"smile": 1.0} and "photo vs output photo" in f["identity"]
    assert env["calls"]["project"] == 3  # one inversion per face
    check_untouched_outside(THREE, out, record)
    first = out.read_bytes()

    code, _, err = edit(capsys, THREE, recipe, out, run_dir, "--face", "all")
    assert code == 0, err
    again = composite_json(run_dir)
    assert {json.dumps(f["stages"]) for f in again["faces"]} == {
        json.dumps(dict.fromkeys(["align", "invert", "drag"], "reused"))
    }
    assert env["calls"]["project"] == 3 and out.read_bytes() == first and counted["decode"] == 2


def folder_state(folder):
    """Every path under `folder` with its bytes (None for a folder); the marker's text (the last lock's
    pid) left out, its presence kept; None when `folder` is absent."""
    if not folder.exists():
        return None
    paths = sorted(folder.rglob("*"))
    return {str(p.relative_to(folder)): None if p.is_dir() or p.name == MARKER else p.read_bytes() for p in paths}


REFUSED = [
    (("--face", "5"), "--face 5 is out of range: 2 face(s) found"),
    (("--face", "0,5"), "--face 5 is out of range: 2 face(s) found"),
    (("--face", "all", "--min-face", "5000"), "every face is too small to edit (2 found"),
]


def test_a_refused_face_choice_leaves_the_run_folder_as_it_was(env, capsys):
    """Refused in one line before anything is written: a new run folder is not made (nor RUN/detect/),
    an existing one (here an aligned run) and a user's empty folder are left as they were."""
    photo, out = two_faces_photo(env["tmp"]), env["tmp"] / "two.jpg"
    recipe = group_recipe(env)
    aligned, empty = env["tmp"] / "aligned", env["tmp"] / "empty"
    code, _, err = cli(capsys, "align", str(photo), "--out", str(aligned), "--size", "64")
    assert code == 0, err
    empty.mkdir()
    nothing = group_recipe(env, presets={}, align={"face": "all"}, faces={"7": {"presets": {"smile": 1.0}}})
    cases = REFUSED + [((), 'the recipe\'s "faces" names face 7, which is out of range: 2 face(s) found')]
    for i, (flags, message) in enumerate(cases):
        chosen = nothing if not flags else recipe
        for run_dir in (env["tmp"] / f"new{i}", aligned, empty):
            before = folder_state(run_dir)
            code, _, err = edit(capsys, photo, chosen, out, run_dir, *flags)
            assert code == 2 and err.strip().count("\n") == 0 and message in err, (flags, err)
            assert folder_state(run_dir) == before, (flags, run_dir)
            assert not out.exists()
    assert "align" in folder_state(aligned) and folder_state(empty) == {}
    # the default run folder (under PHOTODRAG_HOME/runs) is not made either
    code, _, err = cli(capsys, "edit", str(photo), "--recipe", recipe, "-o", str(out), "--face", "0,5")
    assert code == 2 and not list((env["home"] / "runs").glob("*"))


@pytest.mark.slow
def test_two_faces_small_one_skipped_unless_named_and_out_of_range_refused(env, capsys):
    if not TWO.exists():
        pytest.skip(NO_SHARED)
    recipe, out = group_recipe(env), env["tmp"] / "two.jpg"
    code, _, err = edit(capsys, TWO, recipe, out, env["tmp"] / "bad", "--face", "5")
    assert code == 2 and err.strip().count("\n") == 0
    assert "--face 5 is out of range: 2 face(s) found" in err and not out.exists()
    assert not (env["tmp"] / "bad").exists()

    run_dir = env["tmp"] / "run"
    code, _, err = edit(capsys, TWO, recipe, out, run_dir, "--face", "all")
    assert code == 0, err
    record = composite_json(run_dir)
    assert [f["face"] for f in record["faces"]] == [0]
    (skip,) = record["skipped"]
    assert skip["face"] == 1 and "under 64 px" in skip["reason"] and len(skip["box"]) == 4
    assert "face 1 skipped: too small" in err and not (run_dir / "faces" / "1").exists()
    assert Image.open(out).format == "JPEG"
    # a refused choice in this finished run folder leaves it as it was (its faces read from RUN/detect/)
    before = folder_state(run_dir)
    code, _, err = edit(capsys, TWO, recipe, env["tmp"] / "none.jpg", run_dir, "--face", "0,5")
    assert code == 2 and "--face 5 is out of range" in err and folder_state(run_dir) == before

    # face 0 edited alone (--face 0) is the same content: its inversion comes from the cache
    code, _, err = edit(capsys, TWO, recipe, env["tmp"] / "one.jpg", env["tmp"] / "single", "--face", "0")
    assert code == 0, err
    assert env["calls"]["project"] == 1

    # named by index, the small face is edited (with align's warning); a per-face recipe drags it by pixels
    drag = {"handle": [165, 131], "target": [160, 127]}
    named = group_recipe(env, faces={"0": {"presets": {"smile": 1.0}}, "1": {"drags": [drag]}})
    run2 = env["tmp"] / "run2"
    code, _, err = edit(capsys, TWO, named, env["tmp"] / "both.png", run2)
    assert code == 0, err
    record = composite_json(run2)
    assert [f["face"] for f in record["faces"]] == [0, 1] and record["skipped"] == []
    assert "face 1: small face" in err
    points = json.loads((run2 / "faces" / "1" / "drag" / "drag.json").read_text())["points"]
    assert points[0]["photo"]["handle"] == [165.0, 131.0]
    assert (run2 / "faces" / "0" / "invert").is_dir() and env["calls"]["project"] == 2  # face 0 reused the cache
    check_untouched_outside(TWO, env["tmp"] / "both.png", record)


@pytest.mark.slow
def test_many_faces_the_small_ones_are_skipped(env, capsys):
    if not MANY.exists():
        pytest.skip(NO_SHARED)
    run_dir, out = env["tmp"] / "run", env["tmp"] / "many.png"
    code, stdout, err = edit(capsys, MANY, group_recipe(env), out, run_dir, "--face", "all", "--min-face", "260")
    assert code == 0, err
    record = composite_json(run_dir)
    faces = json.loads((run_dir / "detect" / "faces.json").read_text())["faces"]
    wide = [i for i, f in enumerate(faces) if min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) >= 260]
    assert len(faces) > 10 and 0 < len(wide) < len(faces)
    assert [f["face"] for f in record["faces"]] == wide
    assert sorted(s["face"] for s in record["skipped"]) == [i for i in range(len(faces)) if i not in wide]
    assert all("under 260 px" in s["reason"] for s in record["skipped"])
    assert sorted(int(p.name) for p in (run_dir / "faces").iterdir()) == wide
    check_untouched_outside(MANY, out, record)


@pytest.mark.slow
def test_album_with_every_face(env, capsys, monkeypatch):
    """Two photos of two faces each; the second is the first's bytes, so its faces' inversions are cache hits.
    Each photo's faces are detected once, and its album.json record lists each face's identity figures."""
    import align.group

    searched = []
    monkeypatch.setattr(
        align.group, "find_faces", lambda rgb, _find=align.group.find_faces: searched.append(1) or _find(rgb)
    )
    photo = two_faces_photo(env["tmp"])
    copy = env["tmp"] / "copy.jpg"
    copy.write_bytes(photo.read_bytes())
    album = env["tmp"] / "album"
    code, stdout, err = cli(
        capsys, "edit", str(photo), str(copy), "--recipe", group_recipe(env), "--face", "all", "-o", str(album)
    )
    assert code == 0, err
    assert stdout.split() == [str(album / "two_faces_edited.jpg"), str(album / "copy_edited.jpg")]
    entries = json.loads((album / "album.json").read_text())["photos"]
    assert {e["status"] for e in entries.values()} == {"done"}
    runs = [r for r in (env["home"] / "runs").iterdir() if (r / "detect").is_dir()]
    assert [sorted(p.name for p in (r / "faces").iterdir()) for r in runs] == [["0", "1"], ["0", "1"]]
    assert env["calls"]["project"] == 2 and len(searched) == 2
    for run in runs:
        entry = entries[run.name.split("-")[0] + "_edited.jpg"]
        figures = {str(f["face"]): f["identity"] for f in composite_json(run)["faces"]}
        assert entry["face_identity"] == {
            n: {what: None if d is None else round(d, 4) for what, d in ids.items()} for n, ids in figures.items()
        }
        assert entry["face_identity"]["0"]["photo vs output photo"] is not None  # measured on the output photo
        edited = [ids["photo vs edited"] for ids in entry["face_identity"].values()]
        assert entry["identity_distance"] == (None if None in edited else max(edited))
