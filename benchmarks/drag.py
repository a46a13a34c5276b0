"""Drag step timing: the fast b128 path vs a full-resolution step, at 256/512/1024, batch 1.

Prints one JSON object.  Random weights with the real FFHQ configs (speed does not depend
on the values).  A "full" step is what the official loop does: the whole synthesis forward
+ backward and the whole feature map resized to image size.  Each (resolution, path) runs
in its own process so that peak memory (RSS on CPU, allocator peak on CUDA) is its own.

    python benchmarks/drag.py [--res 256 512 1024] [--steps 5] [--device cpu|cuda|auto]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _measure(res: int, fast: bool, steps: int, device_name: str, threads: int, queue) -> None:
    import torch

    from common.settings import resolve_device
    from drag.engine import DragConfig, DragEngine
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    w = G.mapping(torch.randn(1, G.z_dim, device=device))
    s = res / 512
    handles = [[200 * s, 250 * s], [300 * s, 250 * s]]
    targets = [[180 * s, 230 * s], [330 * s, 240 * s]]
    engine = DragEngine(G, w, handles, targets, config=DragConfig(steps=steps + 2, stall_steps=10 ** 6), fast=fast)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    state = engine.start()
    state = engine.step(state)  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        state = engine.step(state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {"model": f"ffhq-{res}", "path": "fast" if fast else "full",
           "ms_per_step": round(1000 * statistics.median(times), 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    queue.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    import torch
    rows = []
    for res in args.res:
        pair = {fast: run_isolated(_measure, res, fast, args.steps, args.device, args.threads)
                for fast in (True, False)}
        rows.append({"model": f"ffhq-{res}", "fast": pair[True], "full": pair[False],
                     "speedup": round(pair[False]["ms_per_step"] / pair[True]["ms_per_step"], 2)})
    print(json.dumps({"benchmark": "drag", "torch": torch.__version__, "threads": args.threads,
                      "device": args.device if args.device != "auto" else
                      ("cuda" if torch.cuda.is_available() else "cpu"),
                      "results": rows}, indent=2))


if __name__ == "__main__":
    main()
