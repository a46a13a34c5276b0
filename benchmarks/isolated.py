"""Run one measurement in a fresh process, so its peak memory belongs to it alone."""

from __future__ import annotations

import multiprocessing as mp


def run_isolated(target, *args):
    """Call target(*args, queue) in a spawned process and return what it puts on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try:
        return q.get()
    finally:
        p.join()
