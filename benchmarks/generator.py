"""Generator speed and memory: forward and forward+backward (d/dw) at 256/512/1024, batch 1.

Prints one JSON object.  Weights are random with the real FFHQ configs (speed does not
depend on the values).  Each resolution runs in a fresh child process so that peak
memory (RSS on CPU, allocator peak on CUDA) belongs to that configuration alone.

    python benchmarks/generator.py [--device cpu|cuda|auto] [--res 256 512 1024] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _measure(res: int, device_name: str, repeats: int, threads: int, queue) -> None:
    import torch

    from common.settings import resolve_device
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    name = f"ffhq-{res}"
    G = Generator(**REGISTRY[name].init_kwargs).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn(1, G.z_dim, device=device))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")

    def forward_backward():
        w = ws.detach().requires_grad_(True)
        G.synthesis(w, noise_mode="const").square().mean().backward()

    out = {"model": name, "num_ws": G.num_ws}
    for label, fn in (("forward", forward), ("forward_backward", forward_backward)):
        for _ in range(2):  # warm-up (allocator, oneDNN/cuDNN plans)
            fn()
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        out[label] = {"ms_median": round(1000 * statistics.median(times), 1),
                      "ms_min": round(1000 * min(times), 1)}
        if device.type == "cuda":
            out[label]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["weights_mib"] = round(sum(p.numel() for p in G.parameters()) * 4 / 2**20, 1)
    queue.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    import torch

    results = [run_isolated(_measure, res, args.device, args.repeats, args.threads) for res in args.res]
    print(json.dumps({
        "benchmark": "generator",
        "device": args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "batch": 1, "noise_mode": "const", "repeats": args.repeats,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
