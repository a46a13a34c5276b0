"""Albums without Ray: the skip rule, album.json, the recipe rule, and `edit --cluster local` end to end."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from album_helpers import FACELESS, FACES, album_photos, write_model, write_recipe
from common.errors import UsageError
from common.fileio import sha256_file
from helpers import random_lpips
from pipeline.album import (
    ALBUM_FILE,
    AlbumLog,
    EditOptions,
    PhotoResult,
    check_album_recipe,
    is_finished,
    photo_identity,
    plan,
    read_album,
    recipe_sha256,
)
from pipeline.recipe import parse_recipe
from pipeline.summary import EditSummary
from run_pipeline import main

R = parse_recipe({"coords": "aligned", "drags": [{"handle": [10, 10], "target": [12, 12]}]})


# the skip rule ---------------------------------------------------------------
@pytest.mark.parametrize(
    "entry,exists,expected",
    [
        ({"status": "done", "sha256": "p", "recipe_sha256": "r"}, True, True),
        ({"status": "skipped", "sha256": "p", "recipe_sha256": "r"}, True, True),
        ({"status": "done", "sha256": "p", "recipe_sha256": "r"}, False, False),  # output deleted
        ({"status": "done", "sha256": "other", "recipe_sha256": "r"}, True, False),  # photo changed
        ({"status": "done", "sha256": "p", "recipe_sha256": "old"}, True, False),  # recipe changed
        ({"status": "failed", "sha256": "p", "recipe_sha256": "r"}, True, False),  # failures are retried
        (None, True, False),  # output not ours
    ],
)
def test_skip_rule(entry, exists, expected):
    assert is_finished(entry, exists, "p", "r") is expected


def test_recipe_fingerprint_follows_recipe_and_quality(tmp_path):
    opts = EditOptions(home=tmp_path)
    other = parse_recipe({"coords": "aligned", "drags": [{"handle": [10, 10], "target": [13, 12]}]})
    assert recipe_sha256(R, opts) == recipe_sha256(R, EditOptions(home=tmp_path / "elsewhere"))
    assert recipe_sha256(R, opts) != recipe_sha256(other, opts)
    assert recipe_sha256(R, opts) != recipe_sha256(R, EditOptions(home=tmp_path, jpeg_quality=90))
    assert recipe_sha256(R, opts) != recipe_sha256(replace(R, blend="generator"), opts)  # another composite


def test_plan_skips_finished_and_fails_unreadable(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_edited.jpg").write_bytes(b"edited")
    from common.fileio import sha256_file

    prev = {"a_edited.jpg": {"status": "done", "sha256": sha256_file(a), "recipe_sha256": "r"}}
    tasks, known = plan([a, b, tmp_path / "gone.jpg"], out, "r", prev)
    assert [t.photo for t in tasks] == [b]
    assert [(k.output, k.status) for k in known] == [("a_edited.jpg", "skipped"), ("gone_edited.jpg", "failed")]
    assert "cannot read" in known[1].reason
    tasks, _ = plan([a], out, "r", prev, force=True)
    assert [t.photo for t in tasks] == [a]


def test_album_json_is_rewritten_per_result_and_read_back(tmp_path):
    log = AlbumLog(tmp_path, R, "r", {"old_edited.jpg": {"status": "done"}})
    log.record(
        PhotoResult("a_edited.jpg", "/p/a.jpg", "done", 1.5, identity_distance=0.2, sha256="s", recipe_sha256="r")
    )
    log.record(PhotoResult("b_edited.jpg", "/p/b.jpg", "failed", 0.1, reason="no face found"))
    data = json.loads((tmp_path / ALBUM_FILE).read_text())
    assert data["recipe_sha256"] == "r" and data["recipe"]["coords"] == "aligned"
    assert data["photos"]["a_edited.jpg"]["identity_distance"] == 0.2
    assert data["photos"]["b_edited.jpg"]["reason"] == "no face found"
    assert set(read_album(tmp_path)) == {"old_edited.jpg", "a_edited.jpg", "b_edited.jpg"}
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / ALBUM_FILE).write_text("{broken")
    assert read_album(tmp_path) == {}


def face_summary(reconstruction, edited, output) -> EditSummary:
    summary = EditSummary(output=Path("out.jpg"), run_dir=Path("run"))
    summary.identity.update(
        {"photo vs reconstruction": reconstruction, "photo vs edited": edited, "photo vs output photo": output}
    )
    return summary


def test_identity_of_a_group_photo_is_its_worst_face_and_each_face_is_listed():
    one = face_summary(0.1, 0.212345678, 0.3)
    assert photo_identity(one) == (0.2123, None)  # one face: the figure albums always had
    group = EditSummary(output=Path("out.jpg"), run_dir=Path("run"))
    group.faces = {2: face_summary(0.1, 0.35, 0.2), 0: face_summary(0.15, 0.4123456, 0.25)}
    distance, faces = photo_identity(group)
    assert distance == 0.4123 and list(faces) == ["0", "2"]
    assert faces["2"] == {"photo vs reconstruction": 0.1, "photo vs edited": 0.35, "photo vs output photo": 0.2}
    group.faces[1] = face_summary(0.1, None, 0.2)  # dlib found no face in face 1's edit: the worst is unknown
    distance, faces = photo_identity(group)
    assert distance is None and faces["1"]["photo vs edited"] is None and faces["0"]["photo vs edited"] == 0.4123


def test_album_json_lists_a_group_photo_faces_and_keeps_one_face_records_as_they_were(tmp_path):
    log = AlbumLog(tmp_path, R, "r", {})
    figures = {"0": {"photo vs reconstruction": 0.1, "photo vs edited": 0.3, "photo vs output photo": 0.2}}
    log.record(PhotoResult("g_edited.jpg", "/p/g.jpg", "done", 1.0, identity_distance=0.3, face_identity=figures))
    log.record(PhotoResult("a_edited.jpg", "/p/a.jpg", "done", 1.0, identity_distance=0.2))
    photos = json.loads((tmp_path / ALBUM_FILE).read_text())["photos"]
    assert photos["g_edited.jpg"]["face_identity"] == figures and photos["g_edited.jpg"]["identity_distance"] == 0.3
    assert sorted(photos["a_edited.jpg"]) == [
        "identity_distance",
        "photo",
        "reason",
        "recipe_sha256",
        "seconds",
        "sha256",
        "status",
    ]
    # a finished group photo skipped on the next run keeps its figures
    photo = tmp_path / "g.jpg"
    photo.write_bytes(b"photo")
    (tmp_path / "g_edited.jpg").write_bytes(b"edited")
    prev = {"g_edited.jpg": dict(photos["g_edited.jpg"], sha256=sha256_file(photo), recipe_sha256="r")}
    _, (known,) = plan([photo], tmp_path, "r", prev)
    assert known.status == "skipped" and known.face_identity == figures and known.identity_distance == 0.3


@pytest.mark.parametrize("coords", ["photo", "relative"])
def test_pixel_points_are_refused_for_several_photos(coords):
    r = parse_recipe({"coords": coords, "drags": [{"handle": [0.1, 0.1], "target": [0.2, 0.2]}]})
    check_album_recipe(r, 1)
    with pytest.raises(UsageError, match=f'"{coords}" coordinates cannot be applied to 2 photos'):
        check_album_recipe(r, 2)
    check_album_recipe(R, 2)


def test_presets_only_recipes_fit_any_album_but_mixed_pixel_drags_do_not():
    check_album_recipe(parse_recipe({"presets": {"smile": 0.5}}), 3)
    mixed = parse_recipe({"presets": {"smile": 0.5}, "drags": [{"handle": [10, 10], "target": [12, 12]}]})
    with pytest.raises(UsageError, match="cannot be applied to 3 photos"):
        check_album_recipe(mixed, 3)


# the command line ------------------------------------------------------------
def cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(["--quiet", "--device", "cpu", *argv], lpips=random_lpips)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cluster_ray_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"coords": "aligned", "drags": [{"handle": [10, 10], "target": [12, 12]}]}))
    code, _, err = cli(
        capsys, "edit", str(tmp_path / "a.jpg"), "--recipe", str(recipe), "-o", str(tmp_path / "o"), "--cluster", "ray"
    )
    assert code == 2 and err.strip() == "photodrag: error: --cluster ray needs Ray: pip install -e '.[cluster]'"


def test_relative_batch_is_refused_in_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"coords": "relative", "drags": [{"handle": [0.4, 0.5], "target": [0.45, 0.5]}]}))
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    code, _, err = cli(capsys, "edit", str(a), str(b), "--recipe", str(recipe), "-o", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'use "coords": "aligned"' in err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def local_album(tmp_path, home, monkeypatch):
    model = write_model(tmp_path / "tiny.safetensors")
    recipe = write_recipe(tmp_path / "r.json", model)
    return {"model": model, "recipe": recipe, "out": tmp_path / "album", "photos": album_photos(tmp_path)}


@pytest.mark.slow
def test_local_album_fails_the_faceless_photo_alone_then_skips_and_recomputes(local_album, capsys, tmp_path):
    env = local_album
    photos = [str(p) for p in env["photos"]]
    code, out, err = cli(capsys, "edit", *photos, "--recipe", str(env["recipe"]), "-o", str(env["out"]))
    assert code == 2 and "faceless.jpg: failed: no face found" in err and "1 of 3 photos failed" in err
    done = sorted(p.name for p in env["out"].iterdir())
    assert done == sorted([ALBUM_FILE, *FACES])
    assert out.split() == [str(env["out"] / n) for n in FACES]
    album = json.loads((env["out"] / ALBUM_FILE).read_text())["photos"]
    assert album[FACELESS]["status"] == "failed" and "no face found" in album[FACELESS]["reason"]
    assert {album[n]["status"] for n in album if n != FACELESS} == {"done"}
    assert all(album[n]["seconds"] > 0 for n in album)
    first = {n: (env["out"] / n).stat().st_mtime_ns for n in album if n != FACELESS}

    code, _, _ = cli(capsys, "edit", *photos[:2], "--recipe", str(env["recipe"]), "-o", str(env["out"]))
    assert code == 0
    album = json.loads((env["out"] / ALBUM_FILE).read_text())["photos"]
    assert {album[n]["status"] for n in first} == {"skipped"}
    assert first == {n: (env["out"] / n).stat().st_mtime_ns for n in first}

    changed = write_recipe(tmp_path / "r2.json", env["model"], drag={"steps": 4})
    code, _, _ = cli(capsys, "edit", *photos[:2], "--recipe", str(changed), "-o", str(env["out"]))
    assert code == 0
    album = json.loads((env["out"] / ALBUM_FILE).read_text())["photos"]
    assert {album[n]["status"] for n in first} == {"done"}


def test_ctrl_c_closes_the_executor_and_leaves_no_partial_output(tmp_path):
    from pipeline.album import run_album

    photos = []
    for name in "abc":
        photos.append(tmp_path / f"{name}.jpg")
        photos[-1].write_bytes(name.encode())
    out = tmp_path / "out"
    closed = []

    class Interrupted:
        def run(self, tasks, recipe, options):
            try:
                tasks[0].output.write_bytes(b"whole")
                yield PhotoResult(tasks[0].output.name, str(tasks[0].photo), "done", 1.0, sha256=tasks[0].sha256)
                (out / f".{tasks[1].output.name}.x1.tmp").write_bytes(b"half")  # a writer killed mid-file
                raise KeyboardInterrupt
            finally:
                closed.append(True)

    with pytest.raises(KeyboardInterrupt):
        run_album(photos, R, out, EditOptions(home=tmp_path), Interrupted(), progress=False)
    assert closed and sorted(p.name for p in out.iterdir()) == ["a_edited.jpg", ALBUM_FILE]
    assert read_album(out)["a_edited.jpg"]["status"] == "done"
    tasks, known = plan(photos, out, json.loads((out / ALBUM_FILE).read_text())["recipe_sha256"], read_album(out))
    assert [k.output for k in known] == ["a_edited.jpg"] and len(tasks) == 2  # the rerun resumes
