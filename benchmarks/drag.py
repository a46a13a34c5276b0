"""Drag step timing, interleaved in one process: the fast b128 path vs full-resolution steps.

Three paths per resolution, batch 1, on the same random weights (real FFHQ configs; speed
does not depend on the values):
  fast        this project's step: synthesis stops after b128, features sampled at 128x128;
  full        the official loop's step on this project's generator: whole synthesis
              forward + backward, whole feature map resized to image size;
  full_plain  the same full step on the plain reference generator (weights/reference.py).
Steps are timed alternately after warm-up (medians, ratios full/fast and full_plain/fast);
peak memory is measured per path in its own child process (RSS above the post-setup level
on CPU, allocator peak on CUDA).  Prints one JSON object.

    python benchmarks/drag.py [--res 256 512] [--steps 5] [--device cpu|cuda|auto] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated

PATHS = ("fast", "full", "full_plain")


def _engines(res: int, device_name: str, threads: int, paths) -> tuple:
    import torch

    from common.settings import resolve_device
    from drag.engine import DragConfig, DragEngine
    from weights.networks import Generator
    from weights.reference import PlainGenerator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    torch.manual_seed(0)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, device=device))
    s = res / 512
    handles = [[200 * s, 250 * s], [300 * s, 250 * s]]
    targets = [[180 * s, 230 * s], [330 * s, 240 * s]]
    cfg = DragConfig(steps=10**6, stall_steps=10**6)
    gens = {"fast": (G, "fast"), "full": (G, "official"), "full_plain": (PlainGenerator(G), "official")}
    engines = {p: DragEngine(gens[p][0], w, handles, targets, config=replace(cfg, loop=gens[p][1])) for p in paths}
    return engines, device


def _stepper(engine):
    """A callable doing one drag step (restarting if the drag happens to reach its targets)."""
    state = [engine.start()]

    def step():
        state[0] = engine.step(state[0])
        if state[0].done:
            state[0] = engine.start()

    return step


def _sync(device):
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _time(res: int, steps: int, device_name: str, threads: int, queue) -> None:
    from timing import interleaved, machine, ratio, summary

    engines, device = _engines(res, device_name, threads, PATHS)
    t = interleaved({p: _stepper(e) for p, e in engines.items()}, steps, warmup=1, sync=_sync(device))
    queue.put(
        {
            "model": f"ffhq-{res}",
            "machine": machine(device),
            **{p: summary(t[p]) for p in PATHS},
            "full_over_fast": ratio(t["full"], t["fast"]),
            "full_plain_over_fast": ratio(t["full_plain"], t["fast"]),
        }
    )


def _memory(res: int, path: str, device_name: str, threads: int, queue) -> None:
    from timing import peak_memory_above_setup

    engines, device = _engines(res, device_name, threads, [path])
    queue.put(peak_memory_above_setup(_stepper(engines[path]), device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per path")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-memory", action="store_true", help="skip the per-path peak-memory runs")
    args = ap.parse_args()
    rows = []
    for res in args.res:
        row = run_isolated(_time, res, args.steps, args.device, args.threads)
        if not args.no_memory:
            for path in PATHS:
                row[path].update(run_isolated(_memory, res, path, args.device, args.threads))
        rows.append(row)
    print(
        json.dumps(
            {
                "benchmark": "drag",
                "batch": 1,
                "note": "x_over_fast = median x step time / median fast step time, same process, interleaved",
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
