"""Atomic writes: a failed write leaves neither a partial file nor a temp file behind."""

import pytest

from common.fileio import atomic_open, write_json


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write('{"half": ')
            raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failed_first_write_creates_nothing(tmp_path):
    target = tmp_path / "sub" / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as fh:
            fh.write(b"partial")
            raise KeyboardInterrupt
    assert list((tmp_path / "sub").iterdir()) == []


def test_unwritable_folder_is_a_usage_error(tmp_path):
    import os

    from common.errors import UsageError

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "file.txt"
            target.write_text("x")
            target = target / "out.json"
        else:
            target = ro / "out.json"
        with pytest.raises(UsageError, match="cannot write"):
            write_json(target, {})
    finally:
        ro.chmod(0o700)
