"""The web editor under hostile pages, many uploads, a full disk and SIGTERM (issue 28, item 7)."""

import base64
import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import MOUTH_RIGHT, PORTRAIT, TARGET, tiny_generator, tiny_services
from pipeline.models import LoadedModels, OpenModels
from weights.models import ChosenModel

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.webui.app import create_app  # noqa: E402
from pipeline.webui.guard import HostPolicy, served_hosts, split_host  # noqa: E402
from pipeline.webui.session import Limits, Services, SessionManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1:7860"


def portrait_pixels() -> int:
    w, h = Image.open(PORTRAIT).size
    return w * h


def bare_services() -> Services:
    """Enough for uploads: nothing is inverted, so no model is loaded."""
    chosen = ChosenModel("none", Path("none"), "none", 64)
    return Services(OpenModels(chosen, LoadedModels(), None, torch.device("cpu")), None, None)


@pytest.fixture(scope="module")
def alex():
    """The preview profile's only LPIPS network, with a random backbone."""
    from inversion.perceptual import Perceptual

    return {"alex": Perceptual("alex", random_backbone=True)}


def _tiny_model(folder: Path) -> Path:
    from weights.checkpoint import save_generator

    model = folder / "tiny.safetensors"
    save_generator(tiny_generator(res=64, dim=32), model)
    return model


def editor(manager, **kw) -> TestClient:
    return TestClient(create_app(manager, allowed_hosts=[HOST], **kw), base_url=f"http://{HOST}")


def upload(c, path=PORTRAIT, name="portrait.jpg"):
    return c.post("/api/session", files={"file": (name, Path(path).read_bytes(), "image/jpeg")})


def wait(c, sid, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        st = c.get(f"/api/session/{sid}/status").json()
        if st["state"] in ("ready", "error"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"session stayed {st['state']}")


def one_line_error(r) -> str:
    msg = r.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# Host and Origin ------------------------------------------------------------------------------
def test_host_names_parse_strictly():
    assert split_host("127.0.0.1:7860") == ("127.0.0.1", 7860)
    assert split_host("Photos.Example") == ("photos.example", None)
    assert split_host("[::1]:8080") == ("[::1]", 8080)
    assert split_host("::1") == ("[::1]", None)
    for bad in ("", "a:b", "a:0", "a:70000", "a/b", "user@a", "[::1", "[::1]x", ":80"):
        assert split_host(bad) is None, bad
    assert served_hosts("127.0.0.1", 7860) == ["127.0.0.1:7860", "localhost:7860"]
    assert served_hosts("::", 80) == ["[::1]:80", "127.0.0.1:80", "localhost:80"]
    assert served_hosts("192.168.1.5", 8000) == ["192.168.1.5:8000"]
    port80 = HostPolicy.of(served_hosts("127.0.0.1", 80))
    assert port80.refusal({"host": "127.0.0.1"}) is None  # browsers leave out the default port
    assert port80.refusal({"host": "127.0.0.1", "origin": "https://127.0.0.1"}) is not None  # that is port 443
    with pytest.raises(ValueError):
        HostPolicy.of([])


def test_the_loopback_names_and_the_own_page_are_allowed(tmp_path):
    app = create_app(SessionManager(tmp_path / "ui", bare_services()), allowed_hosts=served_hosts("127.0.0.1", 7860))
    with TestClient(app, base_url="http://localhost:7860") as c:
        assert c.get("/").status_code == 200
        r = c.post(
            "/api/session",
            files={"file": ("tom.jpg", PORTRAIT.read_bytes(), "image/jpeg")},
            headers={"Origin": "http://localhost:7860"},
        )
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        headers = {"Host": HOST, "Origin": f"http://{HOST}"}
        assert c.get(f"/api/session/{sid}/status", headers=headers).status_code == 200
        r = c.get(f"/api/session/{sid}/status", headers={"Host": "localhost.attacker.example:7860"})
        assert r.status_code == 403 and "Host" in one_line_error(r)


def test_testclients_own_host_is_not_allowed_by_default(tmp_path):
    """Nothing allows `testserver` (or any other name) unless the caller lists it."""
    app = create_app(SessionManager(tmp_path / "ui", bare_services()), allowed_hosts=served_hosts("127.0.0.1", 7860))
    with TestClient(app) as c:
        r = c.get("/api/presets")
        assert r.status_code == 403 and "--allow-host" in one_line_error(r)
        assert upload(c).status_code == 403
    assert not (tmp_path / "ui").exists()  # refused before any route ran


# session limits -------------------------------------------------------------------------------
def test_the_session_count_limit_evicts_the_longest_unattended_and_refuses_when_all_are_busy(tmp_path):
    root = tmp_path / "ui"
    m = SessionManager(root, bare_services(), Limits(max_sessions=2, max_pixels=10 * portrait_pixels()))
    with editor(m) as c:
        a, b = upload(c).json()["id"], upload(c).json()["id"]
        full = upload(c)  # both pages were just opened: neither may go
        assert full.status_code == 503 and "busy" in one_line_error(full) and full.headers["Retry-After"]
        assert sorted(p.name for p in root.iterdir()) == sorted([a, b])  # the refused upload left nothing
        m.get(a).last_seen -= 60  # both pages stopped polling, a's first
        m.get(b).last_seen -= 30
        cid = upload(c).json()["id"]
        assert set(m.sessions) == {b, cid} and not (root / a).exists()
        assert c.get(f"/api/session/{a}/status").status_code == 404
        # a session with a job running is not evicted, however long its page has been away
        release = threading.Event()
        job = threading.Thread(target=release.wait, daemon=True)
        job.start()
        m.get(b).thread = job
        m.get(cid).last_seen -= 20  # unattended, but less long than b
        did = upload(c).json()["id"]
        assert set(m.sessions) == {b, did}
        busy = upload(c)  # b works, d's page is new
        assert busy.status_code == 503 and "2 sessions (limit 2)" in one_line_error(busy)
        release.set()
        job.join(timeout=5)
        m.get(b).last_seen -= 60
        assert upload(c).status_code == 200 and b not in m.sessions  # b's job ended: it can go now


def test_the_pixel_limit_evicts_too_and_a_photo_over_it_is_refused(tmp_path):
    px = portrait_pixels()
    m = SessionManager(tmp_path / "ui", bare_services(), Limits(max_sessions=10, max_pixels=int(2.5 * px)))
    with editor(m) as c:
        a, _ = upload(c).json()["id"], upload(c).json()["id"]
        full = upload(c)
        assert full.status_code == 503 and "megapixels" in one_line_error(full)
        m.get(a).last_seen -= 60
        assert upload(c).status_code == 200 and a not in m.sessions and len(m.sessions) == 2
    small = SessionManager(tmp_path / "ui2", bare_services(), Limits(max_pixels=px - 1))
    with editor(small) as c:
        r = upload(c)
        assert r.status_code == 400 and "--max-megapixels" in one_line_error(r)


def test_unwatched_sessions_are_dropped_after_the_idle_time(tmp_path):
    assert Limits().idle_drop_s <= 30 * 60  # minutes, not an hour
    root = tmp_path / "ui"
    m = SessionManager(root, bare_services(), Limits(idle_stop_s=0.1, idle_drop_s=1.5))
    with editor(m, reap_every_s=0.05) as c:
        keep, drop = upload(c).json()["id"], upload(c).json()["id"]
        deadline = time.time() + 10
        while (root / drop).exists() and time.time() < deadline:
            assert c.get(f"/api/session/{keep}/status").status_code == 200  # keep's page polls
            time.sleep(0.1)
        assert c.get(f"/api/session/{drop}/status").status_code == 404 and not (root / drop).exists()
        assert c.get(f"/api/session/{keep}/status").status_code == 200 and (root / keep).is_dir()


# a full disk -----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, mounted for the test (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, timeout=30)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking the disk's free space but about `leave` bytes."""
    filler = disk / "filler"
    with open(filler, "ab") as fh:
        try:
            while (free := shutil.disk_usage(disk).free) > leave:
                fh.write(b"\0" * max(4096, min(2**20, free - leave)))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_an_upload_to_a_full_disk_is_507_and_leaves_no_session_folder(small_disk, monkeypatch):
    root = small_disk / "ui"
    root.mkdir()
    filler = fill(small_disk, leave=PORTRAIT.stat().st_size // 2)
    with editor(SessionManager(root, bare_services())) as c:
        r = upload(c)
        assert r.status_code == 507 and "no space left" in one_line_error(r), r.text
        assert str(small_disk) not in r.json()["error"]  # no server paths
        assert list(root.iterdir()) == []
        # a body too large to keep in memory is spooled to the temp folder: full too, a 507
        monkeypatch.setattr("tempfile.tempdir", str(small_disk))
        big = c.post("/api/session", files={"file": ("x.jpg", os.urandom(3 * 2**20), "image/jpeg")})
        assert big.status_code == 507 and "no space left" in one_line_error(big)
        monkeypatch.undo()
        filler.unlink()
        assert upload(c).status_code == 200  # room again: the failed upload kept none of it


def test_a_full_disk_later_is_507_or_said_in_the_status(small_disk, tmp_path, alex):
    root = small_disk / "ui"
    with editor(SessionManager(root, tiny_services(_tiny_model(tmp_path), tmp_path / "cache", alex))) as c:
        sid = upload(c).json()["id"]
        c.post(f"/api/session/{sid}/invert", json={"face": 0})
        assert wait(c, sid)["state"] == "ready"
        filler = fill(small_disk)
        r = c.get(f"/api/session/{sid}/result")
        assert r.status_code == 507 and "no space left" in one_line_error(r), r.text
        buf = io.BytesIO()
        Image.new("RGBA", Image.open(PORTRAIT).size, (255, 255, 255, 255)).save(buf, format="PNG")
        drag = {"drags": [{"handle": list(MOUTH_RIGHT), "target": list(TARGET)}], "steps": 2}
        mask = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        r = c.post(f"/api/session/{sid}/drag", json={**drag, "mask": mask})
        assert r.status_code == 507 and "no space left" in one_line_error(r), r.text
        assert c.post(f"/api/session/{sid}/drag", json=drag).status_code == 200  # the job finds the disk full
        st = wait(c, sid)
        assert st["state"] == "error" and "no space left" in st["message"] and "internal" not in st["message"]
        assert str(small_disk) not in st["message"]
        filler.unlink()
        assert c.post(f"/api/session/{sid}/drag", json=drag).status_code == 200
        assert wait(c, sid)["state"] == "ready"
        assert c.get(f"/api/session/{sid}/result").status_code == 200


# a bounded shutdown ----------------------------------------------------------------------------
SERVE = """
import sys
sys.path.insert(0, "tests")
from helpers import random_lpips  # no pretrained LPIPS here: random backbones
from run_pipeline import main
main(sys.argv[1:], lpips=random_lpips)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_with_stalled_uploads_stops_serve_within_seconds(tmp_path):
    import httpx

    from weights.checkpoint import save_generator

    model, home, port = tmp_path / "tiny.safetensors", tmp_path / "home", free_port()
    save_generator(tiny_generator(res=64, dim=32), model)
    argv = ["--quiet", "--device", "cpu", "--home", str(home), "serve", "--model", str(model), "--preview"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PHOTODRAG_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, *argv, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stalled = []
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.time() < deadline, "serve did not start within 120 s"
            try:
                if httpx.get(base + "/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        files = {"file": ("tom.jpg", PORTRAIT.read_bytes(), "image/jpeg")}
        assert httpx.post(base + "/api/session", files=files, timeout=30).status_code == 200
        assert len(list((home / "ui").iterdir())) == 1
        for _ in range(2):  # uploads that announce 10 MB and then send nothing more
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(
                f"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 10000000\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n".encode()
            )
            stalled.append(s)
        time.sleep(0.5)
        start = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("serve was still running 20 s after SIGTERM")
        took = time.time() - start
        assert took < 10, f"serve took {took:.1f} s to stop"
        assert list((home / "ui").iterdir()) == []  # the sessions' folders went with it
        assert b"Traceback" not in proc.stderr.read()
    finally:
        for s in stalled:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
