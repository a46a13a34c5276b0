"""The web editor's "start from a seed" (DragGAN's workflow): model list, seed, psi, W or W+, drag,
and the downloads (PNG, latent, recipe) that `edit --recipe` replays to the same bytes."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from helpers import PORTRAIT, cli, lpips_from, tiny_generator

pytest.importorskip("fastapi")
from test_webui import editor, upload, wait  # noqa: E402

from common.fileio import sha256_file  # noqa: E402
from drag.engine import DragConfig  # noqa: E402
from inversion.cache import InversionCache  # noqa: E402
from inversion.config import make_config  # noqa: E402
from pipeline.models import LoadedModels, OpenModels  # noqa: E402
from pipeline.webui.session import Services, SessionManager  # noqa: E402
from weights.checkpoint import save_generator  # noqa: E402
from weights.models import ChosenModel  # noqa: E402
from weights.store import WeightStore  # noqa: E402

RES = 64
HANDLE, TARGET = [30, 34], [36, 30]


@pytest.fixture
def seed_manager(tmp_path, home):
    """An editor serving a tiny generator file, with an empty weights store (no registry model installed)."""
    model = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator(res=RES, dim=32), model)
    chosen = ChosenModel(str(model), model, sha256_file(model), RES)
    models = OpenModels(chosen, LoadedModels(lpips=lpips_from({})), WeightStore(home), torch.device("cpu"))
    cfg = make_config("preview", projection_steps=3, tuning_steps=1)
    svc = Services(models, InversionCache(tmp_path / "cache"), cfg, drag_config=DragConfig())
    return SessionManager(tmp_path / "ui", svc)


def painted_mask() -> str:
    """A mask as the page paints it: an RGBA PNG data URL, a green disc around the handle."""
    m = np.zeros((RES, RES, 4), np.uint8)
    yy, xx = np.mgrid[:RES, :RES]
    m[(xx - 32) ** 2 + (yy - 32) ** 2 < 14**2] = (0, 255, 120, 90)
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_seed_session_drags_in_w_and_its_recipe_replays_to_the_same_bytes(seed_manager, tmp_path, capsys):
    with editor(seed_manager) as c:
        models = c.get("/api/models").json()
        assert models == [{"id": "served", "label": "tiny.safetensors", "resolution": RES, "subject": None}]
        r = c.post("/api/seed", json={"model": "served", "seed": 3, "psi": 0.7, "latent": "w"})
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        assert (r.json()["width"], r.json()["height"]) == (RES, RES)
        st = wait(c, sid)
        assert st["state"] == "ready" and (st["kind"], st["seed"], st["latent"]) == ("seed", 3, "w"), st
        assert Image.open(io.BytesIO(c.get(f"/api/session/{sid}/frame.jpg").content)).size == (RES, RES)
        assert c.get(f"/api/session/{sid}/recipe").status_code == 400  # no round yet
        body = {"drags": [{"handle": HANDLE, "target": TARGET}], "steps": 4, "mask": painted_mask()}
        assert c.post(f"/api/session/{sid}/drag", json=body).status_code == 200
        st = wait(c, sid)
        assert st["state"] == "ready" and st["rounds"] == 1 and st["mask"], st
        png = c.get(f"/api/session/{sid}/result")
        assert png.headers["content-type"] == "image/png" and Image.open(io.BytesIO(png.content)).size == (RES, RES)
        w = load_safetensors(c.get(f"/api/session/{sid}/latent.safetensors").content)["w"]
        w0 = load_file(str(seed_manager.get(sid).run_dir / "invert" / "pivot.safetensors"))["w"]
        assert torch.equal(w[:, :6], w[:, :1].expand(-1, 6, -1)) and torch.equal(w[:, 6:], w0[:, 6:])
        assert not torch.equal(w[:, 0], w0[:, 0])  # W: one vector moved, shared by the first six layers
        recipe = c.get(f"/api/session/{sid}/recipe").json()
        assert recipe["seed"] == {"seed": 3, "psi": 0.7} and recipe["drag"]["latent"] == "w"
        assert recipe["mask"] == {"path": "mask.png"} and "composite" not in recipe
        (tmp_path / "mask.png").write_bytes(c.get(f"/api/session/{sid}/mask.png").content)
        (tmp_path / "recipe.json").write_text(json.dumps(recipe))
        assert c.post(f"/api/session/{sid}/undo").status_code == 200
        assert c.get(f"/api/session/{sid}/status").json()["rounds"] == 0
        undone = c.get(f"/api/session/{sid}/result").content
        assert undone == (seed_manager.get(sid).run_dir / "invert" / "reconstruction.png").read_bytes()
    out = tmp_path / "replayed.png"
    code, _, err = cli(capsys, "edit", "--recipe", str(tmp_path / "recipe.json"), "-o", str(out))
    assert code == 0, err
    assert out.read_bytes() == png.content  # the page's download is what the recipe makes
    runs = list((tmp_path / "home" / "runs").glob("seed-3-*"))
    assert torch.equal(load_file(str(runs[0] / "drag" / "w_edited.safetensors"))["w"], w)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "served", "seed": -1},
        {"model": "served", "seed": 2**32},
        {"model": "served", "seed": "3"},
        {"model": "served", "seed": 1.5},
        {"model": "served", "psi": 100},
        {"model": "served", "psi": "0.7"},
        {"model": "served", "latent": "z"},
        {"model": "", "seed": 1},
        {"seed": 1},
        {"model": "served", "seed": 1, "trunc": 0.5},
    ],
)
def test_bad_seed_bodies_are_422(seed_manager, body):
    with editor(seed_manager) as c:
        r = c.post("/api/seed", json=body)
        assert r.status_code == 422 and r.json()["error"], r.text
        assert not seed_manager.sessions


def test_models_not_listed_are_refused_and_photo_sessions_have_no_latent(seed_manager):
    with editor(seed_manager) as c:
        for model in ("lions-512", str(seed_manager.services.models.chosen.path), "../tiny.safetensors"):
            r = c.post("/api/seed", json={"model": model, "seed": 1})
            assert r.status_code == 400 and "not installed" in r.json()["error"] and "served" in r.json()["error"]
        assert not seed_manager.sessions and not list(seed_manager.root.glob("*"))
        sid = upload(c, PORTRAIT).json()["id"]
        assert c.get(f"/api/session/{sid}/latent.safetensors").status_code == 400
        assert c.post(f"/api/session/{sid}/presets", json={"presets": {}}).status_code == 200  # photo untouched


@pytest.mark.slow
def test_real_browser_starts_from_a_seed_drags_and_downloads(seed_manager, tmp_path):
    """Headless Chromium: pick the model, seed 3, W, Generate; click a handle and a target; Start;
    download the PNG, the latent and the recipe."""
    import re

    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from test_webui import ARTIFACTS, served_browser

    with served_browser(seed_manager, tmp_path) as (browser, base):
        browser.get(base + "/")
        wait_ = WebDriverWait(browser, 120)
        wait_.until(lambda b: Select(b.find_element(By.ID, "seed-model")).options)
        Select(browser.find_element(By.ID, "seed-model")).select_by_value("served")
        for field, value in (("seed", "3"), ("steps", "5")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        Select(browser.find_element(By.ID, "latent")).select_by_value("w")
        browser.find_element(By.ID, "seed-start").click()
        wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "Ready"))
        overlay = browser.find_element(By.ID, "overlay")
        w, h = overlay.size["width"], overlay.size["height"]
        for x, y in (HANDLE, TARGET):  # picture pixels -> offsets from the canvas centre
            ActionChains(browser).move_to_element_with_offset(
                overlay, (x + 0.5) * w / RES - w / 2, (y + 0.5) * h / RES - h / 2
            ).click().perform()
        got = [int(v) for v in re.findall(r"-?\d+", browser.find_element(By.ID, "points").text)]
        assert got[0] == 1 and np.abs(np.array(got[1:5]) - [*HANDLE, *TARGET]).max() <= 1, got
        browser.find_element(By.ID, "start").click()
        wait_.until(EC.text_to_be_present_in_element((By.ID, "status"), "steps; mean distance"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "webui_seed.png"))
        link = lambda i: wait_.until(EC.visibility_of_element_located((By.ID, i))).get_attribute("href")
        png, latent, recipe = (
            httpx.get(link(i), timeout=60) for i in ("download-result", "download-latent", "download-recipe")
        )
        assert browser.find_element(By.ID, "download-result").text == "Edited picture (PNG)"
        assert not browser.find_element(By.ID, "download-mask").is_displayed()  # no mask painted
        assert Image.open(io.BytesIO(png.content)).size == (RES, RES)
        assert load_safetensors(latent.content)["w"].shape[1] == tiny_generator(res=RES, dim=32).num_ws
        assert recipe.json()["seed"] == {"seed": 3, "psi": 0.7} and recipe.json()["drag"]["latent"] == "w"
        assert recipe.json()["drag"]["steps"] == 5 and len(recipe.json()["drags"]) == 1
