"""Faults rather than bad inputs: two processes on one run folder or cache, SIGKILL and SIGTERM at named
points, a full disk, a read-only home (issue 28).

Child processes run the real command line (tests/fault_child.py: random-backbone LPIPS, and a pause
at a named function so that the test kills, signals or releases it there).  Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import LEFT_TARGET, MOUTH_LEFT, MOUTH_RIGHT, PORTRAIT, cli

CHILD = Path(__file__).with_name("fault_child.py")
LIMIT_S = 300.0  # no child and no wait in these tests lasts longer
HOUR = 3600.0


def wait_until(predicate, timeout: float = LIMIT_S, what: str = "") -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(0.1)


class Child:
    """`photodrag ARGS` in a child process, its output in files, optionally paused at a named point."""

    def __init__(self, tmp: Path, name: str, args, pause=None, when="before", match="", env=None) -> None:
        self.flag, self.out, self.err = tmp / f"{name}.reached", tmp / f"{name}.out", tmp / f"{name}.err"
        e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
        if pause:
            e.update(
                PHOTODRAG_TEST_PAUSE=pause,
                PHOTODRAG_TEST_PAUSE_WHEN=when,
                PHOTODRAG_TEST_PAUSE_MATCH=match,
                PHOTODRAG_TEST_PAUSE_FILE=str(self.flag),
            )
        argv = [sys.executable, str(CHILD), "--quiet", "--device", "cpu", *map(str, args)]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=e, cwd=tmp)

    def stderr(self) -> str:
        return self.err.read_text()

    def reached(self) -> None:
        """Wait until the child stops at its pause point."""
        wait_until(lambda: self.flag.exists() or self.proc.poll() is not None, what="the pause point")
        assert self.flag.exists(), f"exited {self.proc.returncode} before its pause point: {self.stderr()}"

    def go(self) -> None:
        self.flag.with_name(self.flag.name + ".go").touch()

    def finish(self):
        rc = self.proc.wait(LIMIT_S)
        return rc, self.out.read_text(), self.stderr()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(LIMIT_S)  # reaped: its PID is gone


@pytest.fixture
def children(tmp_path):
    started = []

    def start(name, args, **kw) -> Child:
        child = Child(tmp_path, name, args, **kw)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.kill()


def edit_args(env, run: Path, out: Path, recipe=None, *extra):
    return ["edit", PORTRAIT, "--recipe", recipe or env["recipe"](), "-o", out, "--run-dir", run, *extra]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def age(path: Path, seconds: float) -> None:
    """Make `path` (and all under it) look `seconds` old, as if the crash happened that long ago."""
    when = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (when, when), follow_symlinks=False)


def temps(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".old-" in p.name)


def cache_root(env) -> Path:
    return env["home"] / "cache" / "inversion"


# 1. a lock per run folder -----------------------------------------------------------------------
def test_the_run_folder_lock_refuses_or_waits(tmp_path):
    from common.errors import BusyError
    from common.run import MARKER, locked_run

    run, said = tmp_path / "run", []
    with locked_run(run):
        assert f"pid {os.getpid()}" in (run / MARKER).read_text()
        with pytest.raises(BusyError, match="in use by another photodrag process"):
            with locked_run(run, wait=False):
                pass
        got = threading.Event()

        def second() -> None:
            with locked_run(run, notify=said.append):
                got.set()

        t = threading.Thread(target=second)
        t.start()
        wait_until(lambda: said, 30, "the waiting line")
        assert not got.is_set() and "waiting" in said[0]
    t.join(30)
    assert got.is_set()  # it went on once the first one let go


def test_different_edits_of_one_photo_get_different_default_run_folders(tmp_path):
    from pipeline.outputs import default_run_dir
    from pipeline.recipe import parse_recipe

    a = parse_recipe({"drags": [{"handle": [1, 2], "target": [3, 4]}]}).to_json()
    b = parse_recipe({"drags": [{"handle": [1, 2], "target": [5, 4]}]}).to_json()
    run = lambda r: default_run_dir(tmp_path, PORTRAIT, "ab" * 32, r)  # noqa: E731
    assert run(a) != run(b) and run(a) == run(dict(a))  # the same edit again reuses its folder
    assert run(a).name.startswith(f"{PORTRAIT.stem}-abababababab-")


@pytest.mark.slow
def test_two_edits_of_one_run_folder_take_turns(env, children):
    tmp, run = env["tmp"], env["tmp"] / "run"
    first = children("first", edit_args(env, run, tmp / "a.png"), pause="pipeline.edit:run_composite")
    first.reached()  # aligned, inverted and dragged; about to composite
    drag_a = (run / "drag" / "drag.json").read_bytes()
    other = env["recipe"](drags=[{"handle": list(MOUTH_LEFT), "target": list(LEFT_TARGET)}])
    second = children("second", edit_args(env, run, tmp / "b.png", other))
    wait_until(lambda: "waiting" in second.stderr() or second.proc.poll() is not None, what="the waiting line")
    assert second.proc.poll() is None and "in use by another photodrag process" in second.stderr()
    rc, _, err = children("nowait", [*edit_args(env, run, tmp / "b.png", other), "--no-wait"]).finish()
    line = one_line(err)
    assert rc == 2 and line.startswith("photodrag: error: ") and "in use by another photodrag process" in line, err
    assert f"pid {first.proc.pid}" in line
    assert (run / "drag" / "drag.json").read_bytes() == drag_a  # the waiting edit touched nothing
    first.go()
    rc, _, err = first.finish()
    assert rc == 0, err
    rc, _, err = second.finish()
    assert rc == 0, err
    handles = [
        json.loads(d)["points"][0]["photo"]["handle"] for d in (drag_a, (run / "drag" / "drag.json").read_text())
    ]
    assert handles == [list(map(float, MOUTH_RIGHT)), list(map(float, MOUTH_LEFT))]
    assert (tmp / "a.png").read_bytes() != (tmp / "b.png").read_bytes()


# 2. cache entries pinned while in use -----------------------------------------------------------
def test_a_pinned_cache_entry_is_neither_evicted_nor_removed(tmp_path):
    from inversion.cache import ENTRY_FILES, InversionCache

    def write(folder):
        for name in ENTRY_FILES:
            (folder / name).write_bytes(os.urandom(1000))

    warnings = []
    reader = InversionCache(tmp_path / "c")  # two objects: two processes' worth of lock descriptors
    writer = InversionCache(tmp_path / "c", limit_bytes=1, warn=warnings.append)
    reader.put("a" * 64, write, {})
    with reader.pinned():
        assert reader.get("a" * 64) is not None
        writer.put("b" * 64, write, {})  # over the limit: would evict a
        assert (tmp_path / "c" / ("a" * 64)).is_dir()
        assert len(warnings) == 1 and "in use by running edits" in warnings[0]
        assert writer.remove("a" * 64, wait=False) is False
        assert writer.clear() == (1, 1)  # b removed, a kept
    assert writer.remove("a" * 64, wait=False) is True
    assert not [p for p in (tmp_path / "c").iterdir()]


@pytest.mark.slow
def test_an_entry_a_running_edit_needs_is_not_evicted(env, children):
    tmp, tiny = env["tmp"], {"PHOTODRAG_CACHE_LIMIT_GB": "0.000001"}  # one entry is over the limit
    first = children("first", edit_args(env, tmp / "ra", tmp / "a.png"), pause="drag.stage:run_drag", env=tiny)
    first.reached()  # inverted; about to load the tuned generator from the cache for the drag
    key = json.loads((tmp / "ra" / "invert" / "invert.json").read_text())["cache"]["key"]
    second = children("second", [*edit_args(env, tmp / "rb", tmp / "b.png"), "--seed", "1"], env=tiny)
    rc, _, err = second.finish()
    assert rc == 0, err
    assert (cache_root(env) / key).is_dir()  # over the limit, but in use: kept, and said so
    assert "in use by running edits, kept for now" in err
    rm = children("rm", ["cache", "rm", key[:16]])
    wait_until(lambda: "waiting" in rm.stderr() or rm.proc.poll() is not None, what="cache rm's waiting line")
    assert rm.proc.poll() is None and "in use by a running edit" in rm.stderr()
    first.go()
    rc, _, err = first.finish()
    assert rc == 0, err
    rc, out, err = rm.finish()
    assert rc == 0 and "removed" in out, err
    assert not (cache_root(env) / key).exists()


# 3. orphaned temp files are swept ---------------------------------------------------------------
def test_the_sweep_removes_only_orphans_older_than_the_grace(tmp_path):
    from common.fileio import sweep_temps

    dead = 2**22 + 1  # above Linux's pid_max: never a live process
    names = {
        f".out.png.{dead}-abcd1234.tmp": True,  # owner gone, old: swept
        f".invert.old-{dead}": True,
        f".drag.{dead}-zz99zz99.tmp": False,  # owner gone, but young
        f".align.{os.getpid()}-abcd1234.tmp": False,  # owner alive
        ".notes.tmp": False,  # not one of our names
        "out.png": False,
    }
    for name in names:
        (tmp_path / name).mkdir() if "old-" in name else (tmp_path / name).write_bytes(b"x" * 10)
        if "zz99" not in name:
            age(tmp_path / name, 2 * HOUR)
    removed = sweep_temps(tmp_path)
    assert sorted(p.name for p, _ in removed) == sorted(n for n, gone in names.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, gone in names.items() if not gone)
    (tmp_path / f".other.png.{dead}-abcd1234.tmp").write_bytes(b"x")
    age(tmp_path / f".other.png.{dead}-abcd1234.tmp", 2 * HOUR)
    assert sweep_temps(tmp_path, targets=["out.png"]) == []  # beside -o: only that output's temps


@pytest.mark.slow
def test_a_cache_write_killed_by_sigkill_is_counted_then_swept(env, children, capsys):
    tmp, run = env["tmp"], env["tmp"] / "run"
    args = edit_args(env, run, tmp / "o.png")
    child = children("killed", args, pause="inversion.cache:sha256_file", match=".tmp/")
    child.reached()  # the entry is written into its temp folder, not yet renamed into place
    child.kill()
    (left,) = [p for p in cache_root(env).iterdir() if p.name.endswith(".tmp")]
    size = sum(p.stat().st_size for p in left.rglob("*") if p.is_file())
    assert size > 100_000
    code, out, err = cli(capsys, "cache", "du")
    assert code == 0 and left.exists(), err  # too young to be an orphan for sure: kept, and counted
    assert out.startswith(f"{size / 2**20:.1f} MiB: 0 entries"), out
    age(left, HOUR)
    code, out, err = cli(capsys, "cache", "clear")
    assert code == 0 and not left.exists() and temps(cache_root(env)) == [], err
    from common.run import locked_run

    with locked_run(run, wait=False):  # the killed edit's lock died with it: no stale lock
        pass


@pytest.mark.slow
def test_a_kill_between_the_stage_folder_renames_is_swept(env, children, capsys):
    tmp, run = env["tmp"], env["tmp"] / "run"
    args = list(map(str, edit_args(env, run, tmp / "o.png")))
    assert cli(capsys, *args)[0] == 0
    child = children("killed", [*args, "--from", "invert"], pause="os:replace", when="after", match=".invert.old-")
    child.reached()  # the old invert/ moved aside, the new one not yet renamed into place
    child.kill()
    left = temps(run)
    assert [n for n in left if n.startswith(".invert.old-")] and [n for n in left if n.startswith(".invert.")]
    for name in left:
        age(run / name, HOUR)
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    assert temps(run) == [] and (run / "invert" / "invert.json").is_file()


@pytest.mark.slow
def test_an_output_killed_while_written_leaves_no_temp_beside_it(env, children, capsys):
    tmp, outs = env["tmp"], env["tmp"] / "outs"
    outs.mkdir()
    (outs / ".mine.txt").write_text("the user's own")
    args = list(map(str, edit_args(env, tmp / "run", outs / "o.png")))
    child = children("killed", args, pause="PIL.Image:Image.save", match=".o.png.")
    child.reached()
    child.kill()
    (left,) = outs.glob(".o.png.*.tmp")
    age(left, HOUR)
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in outs.iterdir()) == [".mine.txt", "o.png"]


# 4. SIGTERM is handled like Ctrl-C --------------------------------------------------------------
def test_sigterm_exits_143_with_one_line_and_keeps_finished_stages(env, capsys, monkeypatch):
    run, out = env["tmp"] / "run", env["tmp"] / "o.png"

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        raise AssertionError("SIGTERM was not handled")

    def unhandled(signum, frame):  # what runs if the CLI installs no handler (instead of pytest dying)
        raise RuntimeError("SIGTERM was not handled by the command line")

    monkeypatch.setattr("pipeline.edit.run_composite", terminated)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        code, _, err = cli(capsys, *map(str, edit_args(env, run, out)))
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the CLI gives the handler back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143, err
    assert "terminated" in one_line(err)
    assert (run / "drag" / "drag.json").is_file() and not out.exists() and temps(run) == []


@pytest.mark.slow
def test_sigterm_in_the_cache_write_removes_the_temp_folder(env, children):
    run = env["tmp"] / "run"
    child = children(
        "termed", edit_args(env, run, env["tmp"] / "o.png"), pause="inversion.cache:sha256_file", match=".tmp/"
    )
    child.reached()
    child.proc.send_signal(signal.SIGTERM)
    rc, _, err = child.finish()
    assert rc == 143, err
    assert "terminated" in one_line(err)
    assert temps(cache_root(env)) == [] and (run / "align" / "align.json").is_file()


# 5. a read-only home, a full disk ---------------------------------------------------------------
def _mount(*args) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small or read-only filesystem")
    res = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True, timeout=30)
    if res.returncode:
        pytest.skip(f"cannot mount here: {res.stderr.strip()}")


@contextlib.contextmanager
def read_only(path: Path):
    """`path` read-only for everyone, root included (a read-only bind mount of itself)."""
    _mount("--bind", path, path)
    try:
        _mount("-o", "remount,bind,ro", path)
        yield path
    finally:
        subprocess.run(["umount", str(path)], timeout=30)


@contextlib.contextmanager
def small_disk(path: Path, free: int):
    """A tmpfs at `path` with about `free` bytes left."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", path)
    try:
        (path / "filler").write_bytes(b"\0" * (shutil.disk_usage(path).free - free))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30)


@pytest.mark.slow
def test_a_read_only_home_serves_cache_hits(env, capsys):
    tmp = env["tmp"]
    recipe = env["recipe"]()
    assert cli(capsys, *map(str, edit_args(env, tmp / "run1", tmp / "a.png", recipe)))[0] == 0
    with read_only(env["home"]):
        with pytest.raises(OSError):
            (env["home"] / "probe").write_text("x")
        code, _, err = cli(capsys, *map(str, edit_args(env, tmp / "run2", tmp / "b.png", recipe)))
    assert code == 0, err
    assert env["calls"]["project"] == 1
    assert json.loads((tmp / "run2" / "invert" / "invert.json").read_text())["cache"]["hit"] is True


@pytest.mark.parametrize("where", ["run folder", "output", "cache"])
def test_a_full_disk_is_one_line_naming_the_path_and_the_free_space(env, capsys, monkeypatch, where):
    tmp = env["tmp"]
    with small_disk(tmp / "disk", free=8 * 1024) as disk:
        run, out = (disk if where == "run folder" else tmp) / "run", (disk if where == "output" else tmp) / "o.png"
        if where == "cache":
            monkeypatch.setenv("PHOTODRAG_HOME", str(disk / "home"))
        code, _, err = cli(capsys, *map(str, edit_args(env, run, out)))
        line = one_line(err)
        assert code == 1 and line.startswith("photodrag: error: no space left on device writing "), err
        assert str(disk) in line and " free there" in line and "internal error" not in line
        assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written stays
        assert not out.exists()
