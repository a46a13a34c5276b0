"""The photodrag command line in a child process, for the fault tests (tests/test_faults.py).

`python tests/fault_child.py ARGS...` runs `run_pipeline.main(ARGS)` with random-backbone LPIPS
(no downloads) and, when PHOTODRAG_TEST_PAUSE names a point, stops there so that the test can
kill it, signal it or let it go on:

    PHOTODRAG_TEST_PAUSE=module:Qual.name   the function to stop at (looked up when called)
    PHOTODRAG_TEST_PAUSE_WHEN=before|after  stop before the call (default) or after it returns
    PHOTODRAG_TEST_PAUSE_MATCH=text         only on a call whose arguments' repr contain this
    PHOTODRAG_TEST_PAUSE_FILE=path          written ("pid N") when the point is reached; the child
                                            goes on once PATH.go exists (at most 300 s later)

Everything here is the test's: the library has no test hooks.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

PAUSE_LIMIT_S = 300.0


def _install_pause(spec: str) -> None:
    module_name, _, qualname = spec.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    when = os.environ.get("PHOTODRAG_TEST_PAUSE_WHEN", "before")
    match = os.environ.get("PHOTODRAG_TEST_PAUSE_MATCH", "")
    flag = Path(os.environ["PHOTODRAG_TEST_PAUSE_FILE"])
    done = []

    def pause() -> None:
        done.append(True)
        flag.write_text(f"pid {os.getpid()}\n")
        go, t0 = flag.with_name(flag.name + ".go"), time.monotonic()
        while not go.exists() and time.monotonic() - t0 < PAUSE_LIMIT_S:
            time.sleep(0.05)

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        hit = not done and match in repr((args, kwargs))
        if hit and when == "before":
            pause()
        result = real(*args, **kwargs)
        if hit and when == "after":
            pause()
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    if os.environ.get("PHOTODRAG_TEST_PAUSE"):
        _install_pause(os.environ["PHOTODRAG_TEST_PAUSE"])
    from helpers import random_lpips
    from run_pipeline import main

    main(sys.argv[1:], lpips=random_lpips)
