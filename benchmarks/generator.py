"""Generator speed, fast path vs the plain reference path, timed interleaved in one process.

Three modes, batch 1, noise_mode const:
  forward           no gradient (rendering);
  backward_w        forward + backward to w with frozen weights (each projection and drag step);
  backward_weights  forward + backward to the synthesis weights with w fixed (each PTI tuning step).
For each resolution one child process times fast (`weights.networks`) and plain
(`weights.reference`) alternately on the same weights after warm-up and reports medians
and plain/fast ratios; peak memory is measured per (path, mode) in its own child process
(RSS above the post-setup level on CPU, allocator peak on CUDA).  Random weights with the
real FFHQ configs (speed does not depend on the values).  Prints one JSON object.

    python benchmarks/generator.py [--res 256 512] [--repeats 5] [--modes forward backward_w]
                                   [--device cpu|cuda|auto] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated

MODES = ("forward", "backward_w", "backward_weights")


def _setup(res: int, device_name: str, threads: int):
    import torch

    from common.settings import resolve_device
    from weights.networks import Generator
    from weights.reference import PlainGenerator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    torch.manual_seed(0)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, device=device))
    return G, {"fast": G, "plain": PlainGenerator(G)}, ws, device


def _step(G, gens: dict, ws, mode: str) -> dict:
    """One callable per path for `mode` (and puts G's requires_grad in the state `mode` needs)."""
    import torch

    G.synthesis.requires_grad_(mode == "backward_weights")

    def make(gen):
        def forward():
            with torch.no_grad():
                gen.synthesis(ws, noise_mode="const")

        def backward_w():
            w = ws.detach().requires_grad_(True)
            gen.synthesis(w, noise_mode="const").square().mean().backward()

        def backward_weights():
            gen.synthesis(ws, noise_mode="const").square().mean().backward()
            G.zero_grad(set_to_none=True)

        return {"forward": forward, "backward_w": backward_w, "backward_weights": backward_weights}[mode]

    return {name: make(gen) for name, gen in gens.items()}


def _sync(device):
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _time(res: int, modes: list, device_name: str, repeats: int, threads: int, queue) -> None:
    from timing import interleaved, machine, ratio, summary

    G, gens, ws, device = _setup(res, device_name, threads)
    out = {"model": f"ffhq-{res}", "machine": machine(device)}
    for mode in modes:
        t = interleaved(_step(G, gens, ws, mode), repeats, warmup=1, sync=_sync(device))
        out[mode] = {
            "fast": summary(t["fast"]),
            "plain": summary(t["plain"]),
            "plain_over_fast": ratio(t["plain"], t["fast"]),
        }
    queue.put(out)


def _memory(res: int, mode: str, path: str, device_name: str, threads: int, queue) -> None:
    from timing import peak_memory_above_setup

    G, gens, ws, device = _setup(res, device_name, threads)
    queue.put(peak_memory_above_setup(_step(G, gens, ws, mode)[path], device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-memory", action="store_true", help="skip the per-path peak-memory runs")
    args = ap.parse_args()
    results = []
    for res in args.res:
        row = run_isolated(_time, res, args.modes, args.device, args.repeats, args.threads)
        if not args.no_memory:
            for mode in args.modes:
                for path in ("fast", "plain"):
                    row[mode][path].update(run_isolated(_memory, res, mode, path, args.device, args.threads))
        results.append(row)
    print(
        json.dumps(
            {
                "benchmark": "generator",
                "batch": 1,
                "noise_mode": "const",
                "repeats": args.repeats,
                "note": "plain_over_fast = median plain time / median fast time, same process, interleaved",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
