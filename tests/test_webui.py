"""The local web editor: session isolation, upload limits and errors, and a real browser run."""

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import MOUTH_RIGHT, PORTRAIT, TARGET, faceless_photo, tiny_generator, tiny_services, two_faces_photo

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from drag.engine import DragConfig  # noqa: E402
from inversion.config import InversionConfig, ProjectionConfig, TuningConfig  # noqa: E402
from inversion.perceptual import Perceptual  # noqa: E402
from pipeline.webui.app import create_app  # noqa: E402
from pipeline.webui.guard import served_hosts  # noqa: E402
from pipeline.webui.session import SessionManager  # noqa: E402
from weights.checkpoint import save_generator  # noqa: E402

ARTIFACTS = Path(os.environ.get("PHOTODRAG_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))


@pytest.fixture(scope="module")
def nets():
    return {n: Perceptual(n, random_backbone=True) for n in ("alex", "vgg")}


@pytest.fixture
def manager(tmp_path, nets):
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=128, dim=32), model)
    cfg = InversionConfig(
        projection=ProjectionConfig(steps=6, w_avg_samples=100), tuning=TuningConfig(steps=3, lpips_threshold=0.0)
    )
    # long drags must run until stopped
    svc = tiny_services(
        model, tmp_path / "cache", nets, resolution=128, inversion_config=cfg, drag_config=DragConfig(stall_steps=10**6)
    )
    return SessionManager(tmp_path / "ui", svc)


HOST = "127.0.0.1:7860"  # the address the test clients name (TestClient's own default is not allowed)


def editor(manager, **kw):
    """A test client of the editor app, sending Host: 127.0.0.1:7860."""
    return TestClient(create_app(manager, allowed_hosts=[HOST], **kw), base_url=f"http://{HOST}")


def upload(client, path=PORTRAIT, name="portrait.jpg"):
    return client.post("/api/session", files={"file": (name, Path(path).read_bytes(), "image/jpeg")})


def wait(client, sid, states=("ready", "error"), timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        st = client.get(f"/api/session/{sid}/status").json()
        if st["state"] in states:
            return st
        time.sleep(0.1)
    raise AssertionError(f"session stayed {st['state']}")


def test_sessions_are_isolated_and_results_have_the_photo_size(manager):
    with editor(manager) as c:
        a, b = upload(c).json(), upload(c, two_faces_photo(manager.root.parent), "two.jpg").json()
        assert a["id"] != b["id"] and len(a["id"]) >= 20
        assert len(b["faces"]) == 2 and (a["width"], a["height"]) == Image.open(PORTRAIT).size
        c.post(f"/api/session/{a['id']}/invert", json={"face": 0})
        assert wait(c, a["id"])["state"] == "ready"
        assert c.get(f"/api/session/{b['id']}/status").json()["state"] == "uploaded"  # b untouched
        r = c.post(
            f"/api/session/{a['id']}/drag",
            json={"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}], "steps": 4, "lr": 0.004, "r2": 10},
        )
        assert r.status_code == 200
        st = wait(c, a["id"])
        assert st["state"] == "ready" and st["rounds"] == 1
        res = c.get(f"/api/session/{a['id']}/result")
        assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
        from io import BytesIO

        assert Image.open(BytesIO(res.content)).size == Image.open(PORTRAIT).size
        recipe = c.get(f"/api/session/{a['id']}/recipe").json()
        assert recipe["drags"][0]["handle"] == list(map(float, MOUTH_RIGHT))
        assert recipe["drag"] == {"steps": 4, "lr": 0.004, "lambda_mask": 20.0, "r1": 3.0, "r2": 10}  # as the page set
        assert c.get(f"/api/session/{a['id']}/run.zip").status_code == 200
        assert c.get(f"/api/session/{b['id']}/result").status_code == 400  # b has nothing yet
        assert not (manager.root / b["id"] / "run").exists()
        # undo returns to the inversion; a second round continues from the current result
        assert c.post(f"/api/session/{a['id']}/undo").status_code == 200
        assert c.get(f"/api/session/{a['id']}/status").json()["rounds"] == 0


def test_bad_uploads_get_clear_messages(manager, monkeypatch):
    with editor(manager) as c:
        r = c.post("/api/session", files={"file": ("x.jpg", b"not an image", "image/jpeg")})
        assert r.status_code == 400 and "not an image" in r.json()["error"]
        assert "ui" not in r.json()["error"]  # no server paths leak
        r = c.post("/api/session", files={"file": ("x.jpg", b"", "image/jpeg")})
        assert r.status_code == 400 and "empty" in r.json()["error"]
        r = upload(c, faceless_photo(manager.root.parent), "faceless.jpg")
        assert r.status_code == 400 and "no face" in r.json()["error"]
        monkeypatch.setattr("pipeline.webui.session.MAX_UPLOAD_BYTES", 1000)
        r = upload(c)
        assert r.status_code == 400 and "larger than" in r.json()["error"]
        monkeypatch.undo()
        r = c.post("/api/session", files={"file": ("../../etc/passwd", PORTRAIT.read_bytes(), "image/jpeg")})
        assert r.status_code == 200
        sid = r.json()["id"]
        assert [p.name for p in (manager.root / sid).iterdir()] == ["photo.img"]  # client names are never paths
        assert c.get("/api/session/nope/status").status_code == 404
        assert not [p for p in manager.root.iterdir() if p.name != sid]  # failed uploads left nothing


def test_bad_drag_requests_and_one_drag_at_a_time(manager):
    with editor(manager) as c:
        sid = upload(c).json()["id"]
        r = c.post(f"/api/session/{sid}/drag", json={"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}]})
        assert r.status_code == 400 and "inversion first" in r.json()["error"]
        c.post(f"/api/session/{sid}/invert", json={"face": 0})
        wait(c, sid)
        bad = c.post(f"/api/session/{sid}/drag", json={"drags": [{"handle": [5, 5], "target": [9, 9]}]})
        assert bad.status_code == 400 and "outside the aligned face crop" in bad.json()["error"]
        assert c.post(f"/api/session/{sid}/drag", json={"drags": []}).status_code == 400
        mask = c.post(
            f"/api/session/{sid}/drag",
            json={
                "drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}],
                "mask": "data:text/plain;base64,aGk=",
            },
        )
        assert mask.status_code == 400 and "PNG" in mask.json()["error"]
        ok = c.post(
            f"/api/session/{sid}/drag",
            json={"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}], "steps": 1000},
        )
        assert ok.status_code == 200
        busy = c.post(
            f"/api/session/{sid}/drag", json={"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}]}
        )
        assert busy.status_code == 400 and "busy" in busy.json()["error"]
        c.post(f"/api/session/{sid}/stop")
        st = wait(c, sid)
        assert st["state"] == "ready" and "stopped" in st["message"]


def test_preset_sliders_give_the_same_drags_as_the_cli(manager, capsys, tmp_path):
    """The arrows a slider shows, the drag it starts and `photodrag drag RUN --preset` agree."""
    import json

    from drag.record import DragRecord
    from helpers import cli

    with editor(manager) as c:
        sid = upload(c).json()["id"]
        early = c.post(f"/api/session/{sid}/presets", json={"presets": {"smile": 0.5}})
        assert early.status_code == 400 and "inversion first" in early.json()["error"]
        c.post(f"/api/session/{sid}/invert", json={"face": 0})
        wait(c, sid)
        unknown = c.post(f"/api/session/{sid}/presets", json={"presets": {"grin": 0.5}})
        assert unknown.status_code == 400 and "known presets" in unknown.json()["error"]
        far = c.post(f"/api/session/{sid}/drag", json={"presets": {"smile": 1.5}})
        assert far.status_code == 400 and "-1..1" in far.json()["error"]
        assert c.post(f"/api/session/{sid}/drag", json={"presets": {"smile": 0}}).status_code == 400
        none = c.post(f"/api/session/{sid}/presets", json={"presets": {}}).json()
        assert none == {"handles": [], "targets": [], "aligned": []}
        arrows = c.post(f"/api/session/{sid}/presets", json={"presets": {"smile": 0.5}}).json()
        assert len(arrows["handles"]) == len(arrows["targets"]) == 2
        listed = c.get("/api/presets").json()
        assert listed[0]["name"] == "smile" and listed[0]["min"] == -1
        r = c.post(f"/api/session/{sid}/drag", json={"presets": {"smile": 0.5}, "steps": 2})
        assert r.status_code == 200, r.text
        st = wait(c, sid)
        assert st["state"] == "ready" and st["rounds"] == 1
        run = manager.get(sid).run_dir
        web = DragRecord.load(run)
        web_mask = (run / "drag" / "mask.png").read_bytes()
        assert web.presets["amounts"] == {"smile": 0.5}
        recipe = c.get(f"/api/session/{sid}/recipe").json()
        assert recipe["presets"] == {"smile": 0.5} and recipe["drags"] == []
        copy = tmp_path / "cli-run"  # the session's folder goes when the app closes
        shutil.copytree(run, copy)
    code, _, err = cli(capsys, "drag", str(copy), "--preset", "smile=0.5", "--steps", "1")
    assert code == 0, err
    cli_rec = DragRecord.load(copy)
    aligned = lambda rec: [[p["aligned"]["handle"], p["aligned"]["target"]] for p in rec.data["points"]]
    assert aligned(web) == aligned(cli_rec) == arrows["aligned"]
    assert web_mask == (copy / "drag" / "mask.png").read_bytes()  # the same default mask
    assert json.loads(json.dumps(cli_rec.presets["amounts"])) == {"smile": 0.5}


def mirrored(point, width=512):
    """A point of the packaged portrait in two_faces_photo's right half (its mirror image)."""
    return [width + width - 1 - point[0], point[1]]


TWO_FACE_DRAGS = {0: (list(MOUTH_RIGHT), list(TARGET)), 1: (mirrored(MOUTH_RIGHT), mirrored(TARGET))}


def png_two_faces(folder: Path) -> Path:
    """two_faces_photo as a PNG: the download is lossless, so untouched pixels compare exactly."""
    path = Path(folder) / "two_faces.png"
    Image.open(two_faces_photo(folder)).save(path)
    return path


def result_rgb(client, sid) -> np.ndarray:
    from io import BytesIO

    res = client.get(f"/api/session/{sid}/result")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    return np.asarray(Image.open(BytesIO(res.content)).convert("RGB")).astype(int)


def test_each_face_keeps_its_edit_and_the_download_carries_them_all(manager):
    """Two faces of one upload: each is inverted into its own run/faces/N and dragged; choosing the
    other face keeps the first one's edit; the download has both; undo on one face leaves the other."""
    photo = png_two_faces(manager.root.parent)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    half = original.shape[1] // 2
    with editor(manager) as c:
        sid = upload(c, photo, "two.png").json()["id"]
        for face, (handle, target) in TWO_FACE_DRAGS.items():
            c.post(f"/api/session/{sid}/invert", json={"face": face})
            st = wait(c, sid)
            assert (st["state"], st["face"], st["rounds"]) == ("ready", face, 0), st
            drag = {"drags": [{"handle": handle, "target": target}], "steps": 3}
            assert c.post(f"/api/session/{sid}/drag", json=drag).status_code == 200
            st = wait(c, sid)
            assert st["state"] == "ready" and st["rounds"] == 1, st
        assert st["edited_faces"] == [0, 1]
        run = manager.root / sid / "run" / "faces"
        assert sorted(p.name for p in run.iterdir()) == ["0", "1"]
        assert all((run / n / "drag" / "drag.json").is_file() for n in ("0", "1"))
        both = result_rgb(c, sid)
        changed = (both != original).any(axis=2)
        assert changed[:, :half].any() and changed[:, half:].any()  # each face's edit is in the download
        c.post(f"/api/session/{sid}/invert", json={"face": 0})  # back to face 0: its round is still there
        st = wait(c, sid)
        assert (st["face"], st["rounds"], st["edited_faces"]) == (0, 1, [0, 1])
        assert np.array_equal(result_rgb(c, sid), both)
        recipe = c.get(f"/api/session/{sid}/recipe").json()
        assert recipe["align"]["face"] == [0, 1] and "drags" not in recipe
        assert recipe["faces"]["1"]["drags"] == [{"handle": TWO_FACE_DRAGS[1][0], "target": TWO_FACE_DRAGS[1][1]}]
        assert c.post(f"/api/session/{sid}/undo").status_code == 200  # face 0's round goes, face 1's stays
        st = c.get(f"/api/session/{sid}/status").json()
        assert (st["face"], st["rounds"], st["edited_faces"]) == (0, 0, [1])
        only_1 = result_rgb(c, sid)
        assert np.array_equal(only_1[:, :half], original[:, :half])
        assert np.array_equal(only_1[:, half:], both[:, half:])
        assert c.get(f"/api/session/{sid}/recipe").json()["align"]["face"] == 1  # one face: its own recipe


def test_a_several_face_recipe_refuses_what_it_cannot_replay(manager):
    photo = png_two_faces(manager.root.parent)
    with editor(manager) as c:
        sid = upload(c, photo, "two.png").json()["id"]
        for face, (handle, target) in TWO_FACE_DRAGS.items():
            c.post(f"/api/session/{sid}/invert", json={"face": face})
            wait(c, sid)
            steps = 2 if face == 0 else 3
            c.post(f"/api/session/{sid}/drag", json={"drags": [{"handle": handle, "target": target}], "steps": steps})
            wait(c, sid)
        r = c.get(f"/api/session/{sid}/recipe")
        assert r.status_code == 400 and "different settings" in r.json()["error"]
        c.post(
            f"/api/session/{sid}/drag",
            json={"drags": [{"handle": TWO_FACE_DRAGS[1][1], "target": TWO_FACE_DRAGS[1][0]}], "steps": 2},
        )
        wait(c, sid)
        r = c.get(f"/api/session/{sid}/recipe")
        assert r.status_code == 400 and "face 1 has 2" in r.json()["error"]


def test_a_closed_tab_stops_its_drag(manager):
    manager.limits = dataclasses.replace(manager.limits, idle_stop_s=0.5)
    with editor(manager, reap_every_s=0.2) as c:
        sid = upload(c).json()["id"]
        c.post(f"/api/session/{sid}/invert", json={"face": 0})
        wait(c, sid)
        c.post(
            f"/api/session/{sid}/drag",
            json={"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}], "steps": 1000},
        )
        session = manager.get(sid)
        session.thread.join(timeout=120)  # nobody polls: the reaper stops it
        assert not session.thread.is_alive()
        assert "stopped" in session.message


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_browser(manager, tmp_path):
    """The editor on a free loopback port and headless Chromium (Selenium): (browser, base URL).
    Skips without Debian's chromium and chromium-driver."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = _free_port()
    app = create_app(manager, allowed_hosts=served_hosts("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "the test server did not start within 30 s"
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield browser, f"http://127.0.0.1:{port}"
    finally:
        browser.quit()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow
def test_real_browser_edit(manager, tmp_path):
    """Headless Chromium: upload, pick the face, click a handle and a target, drag, download."""
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    with served_browser(manager, tmp_path) as (browser, base):
        browser.get(base + "/")
        wait_ = WebDriverWait(browser, 120)
        browser.find_element(By.ID, "upload").send_keys(str(PORTRAIT))
        wait_.until(EC.element_to_be_clickable((By.ID, "face-0"))).click()
        wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "Ready"))
        steps = browser.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("5")
        overlay = browser.find_element(By.ID, "overlay")
        w, h = overlay.size["width"], overlay.size["height"]
        pw, ph = Image.open(PORTRAIT).size
        for x, y in (MOUTH_RIGHT, TARGET):  # photo pixels -> offsets from the canvas centre
            ActionChains(browser).move_to_element_with_offset(
                overlay, x * w / pw - w / 2, y * h / ph - h / 2
            ).click().perform()
        import re

        got = [int(v) for v in re.findall(r"-?\d+", browser.find_element(By.ID, "points").text)]
        assert got[0] == 1 and np.abs(np.array(got[1:5]) - [*MOUTH_RIGHT, *TARGET]).max() <= 2  # whole-pixel clicks
        browser.find_element(By.ID, "start").click()
        wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "after 5 steps"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "webui.png"))
        link = wait_.until(EC.visibility_of_element_located((By.ID, "download-result"))).get_attribute("href")
        res = httpx.get(link, timeout=60)
        assert res.status_code == 200
        from io import BytesIO

        assert Image.open(BytesIO(res.content)).size == (pw, ph)
        assert np.asarray(Image.open(ARTIFACTS / "webui.png")).std() > 0


@pytest.mark.slow
def test_real_browser_edits_two_faces_of_one_upload(manager, tmp_path):
    """Headless Chromium: upload a two-face photo, edit face 0, switch to face 1 and edit it, then the
    download carries both edits and the recipe names both faces."""
    import httpx
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    photo = png_two_faces(tmp_path)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    pw, ph = Image.open(photo).size

    with served_browser(manager, tmp_path) as (browser, base):
        browser.get(base + "/")
        wait_ = WebDriverWait(browser, 120, ignored_exceptions=(StaleElementReferenceException,))

        def click(element_id):  # the face buttons are redrawn as the status changes
            wait_.until(lambda b: b.find_element(By.ID, element_id).is_enabled() and b.find_element(By.ID, element_id))
            wait_.until(lambda b: b.find_element(By.ID, element_id).click() or True)

        browser.find_element(By.ID, "upload").send_keys(str(photo))
        wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "2 faces found"))
        steps = browser.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("3")
        overlay = browser.find_element(By.ID, "overlay")
        for face, (handle, target) in TWO_FACE_DRAGS.items():
            click(f"face-{face}")
            wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), f"Ready (face {face})"))
            w, h = overlay.size["width"], overlay.size["height"]
            for x, y in (handle, target):  # photo pixels -> offsets from the canvas centre
                ActionChains(browser).move_to_element_with_offset(
                    overlay, x * w / pw - w / 2, y * h / ph - h / 2
                ).click().perform()
            browser.find_element(By.ID, "start").click()
            wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "after 3 steps"))
            wait_.until(EC.text_to_be_present_in_element((By.ID, f"face-{face}"), "\u270e"))  # marked as edited
        assert "\u270e" in browser.find_element(By.ID, "face-0").text  # face 0 kept its edit
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "webui_faces.png"))
        wait_.until(EC.text_to_be_present_in_element((By.ID, "download-result"), "faces 0, 1"))
        link = browser.find_element(By.ID, "download-result").get_attribute("href")
        from io import BytesIO

        got = np.asarray(Image.open(BytesIO(httpx.get(link, timeout=60).content)).convert("RGB")).astype(int)
        changed = (got != original).any(axis=2)
        assert changed[:, : pw // 2].any() and changed[:, pw // 2 :].any()
        recipe = httpx.get(browser.find_element(By.ID, "download-recipe").get_attribute("href"), timeout=60).json()
        assert recipe["align"]["face"] == [0, 1] and sorted(recipe["faces"]) == ["0", "1"]
