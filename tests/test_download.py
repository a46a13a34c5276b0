"""Downloads resume, verify size and hash, and never leave a bad file in place (local server only)."""

import hashlib
import http.server
import threading

import pytest

from common.errors import DownloadError
from weights.download import download, part_path

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "good"  # good | truncate | error | norange
    ranges_seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        cls = type(self)
        if cls.mode == "error":
            self.send_error(500, "boom")
            return
        start = 0
        rng = self.headers.get("Range")
        cls.ranges_seen.append(rng)
        if rng and cls.mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.mode == "truncate":
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.mode = "good"
    _Handler.ranges_seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", _Handler
    httpd.shutdown()
    httpd.server_close()


def test_good_download(server, tmp_path):
    url, _ = server
    dest = tmp_path / "w" / "file.bin"
    assert download(url, dest, len(PAYLOAD), SHA, progress=False, timeout=5) == SHA
    assert dest.read_bytes() == PAYLOAD and not part_path(dest).exists()


def test_truncated_download_resumes(server, tmp_path):
    url, handler = server
    dest = tmp_path / "file.bin"
    handler.mode = "truncate"
    with pytest.raises(DownloadError, match="resume"):
        download(url, dest, len(PAYLOAD), SHA, progress=False, timeout=5)
    assert not dest.exists()
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(PAYLOAD)
    handler.mode = "good"
    assert download(url, dest, len(PAYLOAD), SHA, progress=False, timeout=5) == SHA
    assert handler.ranges_seen[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url, handler = server
    dest = tmp_path / "file.bin"
    part_path(dest).write_bytes(b"junk" * 100)
    handler.mode = "norange"
    assert download(url, dest, len(PAYLOAD), SHA, progress=False, timeout=5) == SHA
    assert dest.read_bytes() == PAYLOAD


def test_wrong_hash_leaves_nothing(server, tmp_path):
    url, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="sha256"):
        download(url, dest, len(PAYLOAD), "0" * 64, progress=False, timeout=5)
    assert not dest.exists() and not part_path(dest).exists()


def test_wrong_size_leaves_nothing(server, tmp_path):
    url, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="expected"):
        download(url, dest, len(PAYLOAD) + 1, None, progress=False, timeout=5)
    assert not dest.exists() and not part_path(dest).exists()


def test_server_error_and_unreachable(server, tmp_path):
    url, handler = server
    handler.mode = "error"
    with pytest.raises(DownloadError, match="HTTP 500"):
        download(url, tmp_path / "f", progress=False, timeout=5)
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/nothing", tmp_path / "g", progress=False, timeout=5)
    assert not (tmp_path / "f").exists() and not (tmp_path / "g").exists()
    with pytest.raises(DownloadError, match="cannot reach"):  # no folder is made for a file never received
        download("http://127.0.0.1:9/nothing", tmp_path / "weights" / "ffhq" / "g", progress=False, timeout=5)
    assert not (tmp_path / "weights").exists()
