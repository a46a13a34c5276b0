"""PTI timing: seconds per projection step and per tuning step, peak memory, and a cached re-run.

Prints one JSON object.  Random weights with the real FFHQ configs and random-backbone
LPIPS (speed does not depend on the values).  Each resolution runs in its own process.
The cached re-run is timed against a first run of `--steps` projection + tuning steps
(a full run has 450 + up to 350, so the real ratio is smaller still).

    python benchmarks/inversion.py [--res 256 512] [--steps 6] [--device cpu|cuda|auto]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _measure(res: int, steps: int, device_name: str, threads: int, queue) -> None:
    import numpy as np
    import torch

    from common.settings import resolve_device
    from inversion.api import invert
    from inversion.cache import InversionCache
    from inversion.config import InversionConfig, ProjectionConfig, TuningConfig
    from inversion.perceptual import Perceptual
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    nets = {n: Perceptual(n, random_backbone=True, resolution=256).to(device) for n in ("alex", "vgg")}
    img = (np.random.RandomState(0).rand(res, res, 3) * 255).astype(np.uint8)
    cfg = InversionConfig(projection=ProjectionConfig(steps=steps),
                          tuning=TuningConfig(steps=steps, lpips_threshold=0.0))
    with tempfile.TemporaryDirectory() as tmp:
        cache = InversionCache(Path(tmp))
        t0 = time.perf_counter()
        first = invert(img, G, cfg, perceptual=lambda n, r: nets[n], cache=cache, model_sha256="bench",
                       progress=False)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = invert(img, G, cfg, perceptual=lambda n, r: nets[n], cache=cache, model_sha256="bench",
                        progress=False)
        t_second = time.perf_counter() - t0
        assert second.cache_hit and not first.cache_hit
    sec = first.metrics["seconds"]
    out = {
        "model": f"ffhq-{res}", "steps_each": steps,
        "projection_s_per_step": round(sec["projection"] / steps, 3),
        "tuning_s_per_step": round(sec["tuning"] / steps, 3),
        "first_run_s": round(t_first, 2), "cached_rerun_s": round(t_second, 3),
        "cached_over_first": round(t_second / t_first, 4),
        "full_run_estimate_s": round(sec["projection"] / steps * 450 + sec["tuning"] / steps * 350, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    queue.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    import torch
    results = [run_isolated(_measure, res, args.steps, args.device, args.threads) for res in args.res]
    print(json.dumps({"benchmark": "inversion", "torch": torch.__version__, "threads": args.threads,
                      "device": args.device if args.device != "auto" else
                      ("cuda" if torch.cuda.is_available() else "cpu"),
                      "note": "full_run_estimate_s = per-step times x (450 projection + 350 tuning steps)",
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
