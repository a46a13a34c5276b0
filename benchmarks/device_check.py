"""CUDA readiness check: the CUDA path against the CPU path, a drag and a short inversion, timings.

Run by benchmarks/device_check.sh on a machine with an NVIDIA GPU (under 8 minutes):
  - at 256, 512 and 1024 (the real FFHQ configs, random weights): the image and d/dw on CUDA
    against the CPU path on the same weights and w, in float32 (force_fp32) within
    FP32_TOL x the largest magnitude, and with the fp16 layers the configs name within FP16_TOL;
  - the forward and forward + backward to w on CUDA: median milliseconds and peak GPU memory;
  - a short drag (DragEngine) and a short inversion (PTI: a few projection and tuning steps,
    random-backbone LPIPS) on CUDA at 256, each checked to finish with finite values.
With --dry-run everything runs on the CPU with a tiny generator (its "device" is the CPU too),
in seconds: it checks the script's own plumbing, not a GPU.  Prints one JSON object; exits 1
if a comparison is out of tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import random_perceptual, summary

FP32_TOL = 1e-4  # CUDA float32 vs CPU float32 (TF32 off), relative to the largest magnitude
FP16_TOL = 5e-2  # the fp16 layers (num_fp16_res=4 in the FFHQ configs) vs the CPU's float32


def _rel(a, b) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def _generator(res: int, dry: bool):
    import torch

    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.manual_seed(0)
    if dry:
        kw = dict(z_dim=32, w_dim=32, img_resolution=res, mapping_kwargs=dict(num_layers=2))
        kw["synthesis_kwargs"] = dict(channel_base=res * 8, channel_max=32, num_fp16_res=2, conv_clamp=256)
        return Generator(**kw).eval().requires_grad_(False)
    return Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False)


def _grad_w(G, ws, force_fp32: bool):
    w = ws.detach().clone().requires_grad_(True)
    img = G.synthesis(w, noise_mode="const", force_fp32=force_fp32)
    (img.float() * 0.5).square().mean().backward()
    return img.detach(), w.grad


def _timed(fn, device, repeats: int = 3) -> dict:
    import torch

    fn()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    out = summary(times)
    if cuda:
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def check_resolution(res: int, device, dry: bool) -> dict:
    import torch

    G = _generator(res, dry)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim)) + 0.3 * torch.randn(1, G.num_ws, G.w_dim)
    img_cpu, g_cpu = _grad_w(G, ws, force_fp32=True)
    Gd = G.to(device)
    wd = ws.to(device)
    img32, g32 = _grad_w(Gd, wd, force_fp32=True)
    img16, g16 = _grad_w(Gd, wd, force_fp32=False)
    row = {
        "fp32": {"image": _rel(img32, img_cpu), "d/dw": _rel(g32, g_cpu), "tol": FP32_TOL},
        "fp16_layers": {"image": _rel(img16, img_cpu), "d/dw": _rel(g16, g_cpu), "tol": FP16_TOL},
    }
    row["ok"] = (
        max(row["fp32"]["image"], row["fp32"]["d/dw"]) <= FP32_TOL
        and max(row["fp16_layers"]["image"], row["fp16_layers"]["d/dw"]) <= FP16_TOL
    )

    def forward():
        with torch.no_grad():
            Gd.synthesis(wd, noise_mode="const")

    row["forward"] = _timed(forward, device)
    row["backward_w"] = _timed(lambda: _grad_w(Gd, wd, force_fp32=False), device)
    return row


def check_drag_and_inversion(res: int, device, dry: bool, steps: int) -> dict:
    import numpy as np
    import torch

    from drag.config import DragConfig
    from drag.engine import DragEngine
    from inversion.api import invert
    from inversion.config import make_config

    G = _generator(res, dry).to(device)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, device=device))
    s = G.img_resolution
    eng = DragEngine(G, w, [[s * 0.4, s * 0.5]], [[s * 0.45, s * 0.45]], config=DragConfig(steps=steps))
    t0 = time.perf_counter()
    state = eng.run()
    drag = {"s": round(time.perf_counter() - t0, 2), "steps": steps, "finite": bool(torch.isfinite(state.w).all())}
    with torch.no_grad():
        aligned = eng.render(state)
    perceptual = random_perceptual(device)
    config = make_config(projection_steps=steps, tuning_steps=steps, lpips_threshold=0.0)
    t0 = time.perf_counter()
    res_inv = invert(np.ascontiguousarray(aligned), G, config, perceptual=perceptual, progress=False)
    inv = {"s": round(time.perf_counter() - t0, 2), "steps": steps}
    tuned = res_inv.generator.synthesis.b4.conv1.weight
    inv["finite"] = bool(torch.isfinite(res_inv.pivot.w).all() and torch.isfinite(tuned).all())
    return {"drag": drag, "inversion": inv, "ok": drag["finite"] and inv["finite"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny generator: check the plumbing")
    ap.add_argument("--res", type=int, nargs="+", default=None)
    args = ap.parse_args()
    import torch

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print(json.dumps({"benchmark": "device_check", "error": "no CUDA device; use --dry-run on CPU"}))
        return 2
    device = torch.device("cpu" if dry else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 comparison is against IEEE float32
    torch.backends.cudnn.allow_tf32 = False
    resolutions = args.res or ([16, 32] if dry else [256, 512, 1024])
    out = {"benchmark": "device_check", "dry_run": dry, "device": str(device)}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    out["resolutions"] = {str(r): check_resolution(r, device, dry) for r in resolutions}
    out["drag_and_inversion"] = check_drag_and_inversion(32 if dry else 256, device, dry, steps=2 if dry else 20)
    ok = all(r["ok"] for r in out["resolutions"].values()) and out["drag_and_inversion"]["ok"]
    out["ok"] = ok
    print(json.dumps(out, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
