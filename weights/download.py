"""Resumable, verified downloads.

Bytes go to `<dest>.part`; an interrupted download keeps it and the next call asks
the server for the rest (HTTP Range).  Only a file whose size and sha256 match is
renamed onto `dest`, so `dest` is never a partial or wrong file.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from common.errors import DownloadError
from common.fileio import sha256_file

CHUNK = 1 << 20
Opener = Callable[[str, int, float], object]  # (url, offset, timeout) -> a response, like open_url


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def open_url(url: str, offset: int, timeout: float):
    """The HTTP(S) response for `url` from byte `offset` on (a Range request when resuming)."""
    headers = {"User-Agent": "photodrag"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(
    url: str,
    dest: os.PathLike,
    expected_size: Optional[int] = None,
    expected_sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
    opener: Opener = open_url,
) -> str:
    """Download `url` to `dest` (resuming a previous `.part`); return the file's sha256.
    `opener` makes the request (tests pass one that has no network)."""
    dest = Path(dest)
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    resp = _connect(url, offset, timeout, opener)
    if resp is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write: an
        # unreachable server leaves no empty weights folder behind
        _receive(resp, url, part, offset, expected_size, dest.name, progress)
    return _verify(url, part, dest, expected_size, expected_sha256)


def _connect(url: str, offset: int, timeout: float, opener: Opener):
    """The server's response from `offset` on, or None when it has nothing left to send (HTTP 416)."""
    try:
        return opener(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part may be complete
            return None
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason})") from None


def _receive(resp, url: str, part: Path, offset: int, expected_size: Optional[int], name: str, progress: bool) -> None:
    """Append the response's bytes to `part` (or start it over when the server ignored the Range
    header); a download that breaks off or stops short keeps `part` for the next call."""
    with resp:
        if offset and resp.status != 206:  # server ignored the Range header: start over
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        with (
            open(part, "ab" if offset else "wb") as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(
                    f"download of {url} broke off ({exc}); run the same command again to resume"
                ) from None
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(
            f"download of {url} stopped at {got} of {total} bytes; run the same command again to resume"
        )


def _verify(url: str, part: Path, dest: Path, expected_size: Optional[int], expected_sha256: Optional[str]) -> str:
    """Rename `part` onto `dest` when its size and sha256 are the expected ones (else remove it)."""
    got = part.stat().st_size
    if expected_size is not None and got != expected_size:
        part.unlink()
        raise DownloadError(f"{url} gave {got} bytes, expected {expected_size}; the partial file was removed")
    digest = sha256_file(part)
    if expected_sha256 is not None and digest != expected_sha256:
        part.unlink()
        raise DownloadError(
            f"{url} has sha256 {digest}, expected {expected_sha256}; "
            "the file was removed (corrupt download or a changed file upstream)"
        )
    os.replace(part, dest)
    return digest
