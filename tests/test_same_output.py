"""One edit, three front ends: `edit`, the stage commands one by one, and a web session give the same bytes.

The refactor of issue #14 must not change any output; this is its check that needs no stored
digest: the end-to-end command, the four stage commands and the web editor all run the same
stage code (one composite, pipeline.composite.composite_edit, with either blend) and must agree
byte for byte.
"""

import hashlib
import json
import shutil

import pytest

from helpers import MOUTH_RIGHT, PORTRAIT, cli, random_lpips, tiny_generator, tiny_services
from weights.checkpoint import save_generator

pytestmark = pytest.mark.slow
HANDLE, TARGET = MOUTH_RIGHT, (MOUTH_RIGHT[0] + 8, MOUTH_RIGHT[1] - 8)  # the packaged portrait's mouth corner
INVERT = ["--projection-steps", "4", "--tuning-steps", "2", "--lpips-threshold", "0"]
DRAG_STEPS = 3


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nets():
    """The nets `cli` builds (helpers.random_lpips), so the web session sees the same LPIPS."""
    return {n: random_lpips(n) for n in ("alex", "vgg")}


@pytest.fixture
def setup(tmp_path, monkeypatch, nets):
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=64, dim=32), model)
    photo = tmp_path / "portrait.jpg"
    shutil.copyfile(PORTRAIT, photo)
    return model, photo, tmp_path


def run_cli(*argv):
    code, _, err = cli(None, *argv)
    assert code == 0, err


def web_session(model, photo, tmp, nets, blend="photo"):
    """A web editor session on `photo` with the inversion `INVERT` gives (and the same random LPIPS)."""
    from drag.engine import DragConfig
    from inversion.config import make_config
    from pipeline.webui.session import SessionManager

    svc = tiny_services(
        model,
        tmp / "web-cache",
        nets,
        inversion_config=make_config(projection_steps=4, tuning_steps=2, lpips_threshold=0.0),
        drag_config=DragConfig(),
        blend=blend,
    )
    return SessionManager(tmp / "ui", svc).create(photo.read_bytes(), photo.name)


def finish(session) -> None:
    """Wait for the session's job; it must end ready."""
    session.thread.join(timeout=120)
    assert session.state == "ready", session.message


def edit_output(model, photo, tmp, blend="photo"):
    out = tmp / "edit.jpg"
    run_cli(
        "--home",
        str(tmp / "home-edit"),
        "edit",
        str(photo),
        "--model",
        str(model),
        "--drag",
        f"{HANDLE[0]},{HANDLE[1]}:{TARGET[0]},{TARGET[1]}",
        "--steps",
        str(DRAG_STEPS),
        *INVERT,
        "-o",
        str(out),
        "--run-dir",
        str(tmp / "run-edit"),
        "--blend",
        blend,
    )
    return out


def test_edit_equals_the_stage_commands(setup):
    model, photo, tmp = setup
    edited = edit_output(model, photo, tmp)
    run, out = tmp / "run-stages", tmp / "stages.jpg"
    home = ["--home", str(tmp / "home-stages")]
    run_cli(*home, "align", str(photo), "--out", str(run), "--size", "64")
    run_cli(*home, "invert", str(run), "--model", str(model), *INVERT)
    run_cli(
        *home,
        "drag",
        str(run),
        "--drag",
        f"{HANDLE[0]},{HANDLE[1]}:{TARGET[0]},{TARGET[1]}",
        "--steps",
        str(DRAG_STEPS),
    )
    run_cli(*home, "composite", str(run), "-o", str(out))
    for f in ("align/aligned.png", "drag/edited.png", "composite/blend_mask.png", "composite/changed.png"):
        assert digest(tmp / "run-edit" / f) == digest(run / f), f
    a, b = (json.loads((r / "composite" / "composite.json").read_text()) for r in (tmp / "run-edit", run))
    assert dict(a, output=None) == dict(b, output=None)  # the same blend, changed pixels, motion, identity
    assert a["changed_pixels"] > 0  # an edit that changed the photo, not two copies of the input
    assert digest(edited) == digest(out)


@pytest.mark.parametrize("blend", ["photo", "generator"])
def test_edit_equals_the_web_session(setup, nets, blend):

    pytest.importorskip("fastapi")
    model, photo, tmp = setup
    edited = edit_output(model, photo, tmp, blend)
    session = web_session(model, photo, tmp, nets, blend)
    session.choose_face(0)
    finish(session)
    session.start_drag([{"handle": list(HANDLE), "target": list(TARGET)}], None, {"steps": DRAG_STEPS})
    finish(session)
    data, name, _ = session.result()
    assert hashlib.sha256(data).hexdigest() == digest(edited)
    assert session.recipe()["composite"] == {"blend": blend}


@pytest.mark.parametrize("blend", ["photo", "generator"])
def test_a_several_face_web_session_equals_its_recipe_replayed(setup, nets, blend):
    """Two faces edited in one web session: the download equals `edit --recipe` of the session's
    several-face recipe, byte for byte (per-face runs, one composite pass: pipeline.group)."""
    pytest.importorskip("fastapi")
    from helpers import two_faces_photo

    model, _, tmp = setup
    photo = two_faces_photo(tmp)
    session = web_session(model, photo, tmp, nets, blend)
    mirror = lambda p: [1023 - p[0], p[1]]  # noqa: E731  (the right half is the portrait mirrored)
    for face, handle, target in ((0, list(HANDLE), list(TARGET)), (1, mirror(HANDLE), mirror(TARGET))):
        session.choose_face(face)
        finish(session)
        session.start_drag([{"handle": handle, "target": target}], None, {"steps": DRAG_STEPS})
        finish(session)
    data, _, _ = session.result()
    recipe = session.recipe()
    assert recipe["align"]["face"] == [0, 1] and sorted(recipe["faces"]) == ["0", "1"]
    (tmp / "recipe.json").write_text(json.dumps(recipe))
    out = tmp / "replayed.jpg"
    run_cli(
        "--home",
        str(tmp / "home-replay"),
        "edit",
        str(photo),
        "--model",
        str(model),
        "--recipe",
        str(tmp / "recipe.json"),
        "-o",
        str(out),
        "--run-dir",
        str(tmp / "run-replay"),
    )
    composite = json.loads((tmp / "run-replay" / "composite" / "composite.json").read_text())
    assert composite["order"] == [0, 1] and composite["changed_pixels"] > 0
    assert hashlib.sha256(data).hexdigest() == digest(out)


def test_a_web_round_with_a_painted_mask_equals_its_recipe_replayed(setup, nets):
    """A drag with a painted mask: the recipe names mask.png (the page's Mask download, kept next to it)
    and `edit --recipe` gives the download's bytes."""
    pytest.importorskip("fastapi")
    import base64
    import io

    import numpy as np
    from PIL import Image

    model, photo, tmp = setup
    session = web_session(model, photo, tmp, nets)
    session.choose_face(0)
    finish(session)
    w, h = session.picture_size
    painted = np.zeros((h, w, 4), np.uint8)
    painted[HANDLE[1] - 30 : HANDLE[1] + 30, HANDLE[0] - 40 : HANDLE[0] + 20] = (0, 255, 120, 90)  # the page's paint
    buf = io.BytesIO()
    Image.fromarray(painted).save(buf, format="PNG")
    mask_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    session.start_drag([{"handle": list(HANDLE), "target": list(TARGET)}], mask_url, {"steps": DRAG_STEPS})
    finish(session)
    data, _, _ = session.result()
    recipe = session.recipe()
    assert recipe["mask"] == {"path": "mask.png"} and session.status()["mask"]
    folder = tmp / "downloads"
    folder.mkdir()
    (folder / "recipe.json").write_text(json.dumps(recipe))
    (folder / "mask.png").write_bytes(session.mask_file())
    out = tmp / "replayed.jpg"
    home = ["--home", str(tmp / "home-replay"), "edit", str(photo), "--model", str(model)]
    run_cli(*home, "--recipe", str(folder / "recipe.json"), "-o", str(out), "--run-dir", str(tmp / "run-replay"))
    drag = json.loads((tmp / "run-replay" / "drag" / "drag.json").read_text())
    assert drag["config"]["lambda_mask"] > 0 and (tmp / "run-replay" / "drag" / "mask.png").is_file()
    assert hashlib.sha256(data).hexdigest() == digest(out)
