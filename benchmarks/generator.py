"""Generator speed: each mode as a multiple of the forward, and the forward against the machine's 3x3 conv.

Three modes of the fast path (`weights.networks`), batch 1, noise_mode const:
  forward           no gradient (rendering);
  backward_w        forward + backward to w with frozen weights (each projection and drag step);
  backward_weights  forward + backward to the synthesis weights with w fixed (each PTI tuning step).
For each resolution one child process times the modes and one large 3x3 convolution (the
machine's own ceiling for this arithmetic) interleaved, after warm-up, and reports medians of
wall time and of process CPU time, each mode over the forward, and the forward's GFLOP/s
(its convolutions' multiply-adds x 2) as a share of the convolution's.  Absolute times move
3-4x with other load on a shared machine, the same-run ratios much less; the JSON carries
the load average.  With --plain the plain reference path (`weights.reference`) is timed too.
Peak memory is measured per mode in its own child process (RSS above the post-setup level
on CPU, allocator peak on CUDA).  Random weights with the real FFHQ configs (speed does not
depend on the values).  Prints one JSON object.

    python benchmarks/generator.py [--res 256 512] [--repeats 5] [--modes forward backward_w]
                                   [--device cpu|cuda|auto] [--plain] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated

MODES = ("forward", "backward_w", "backward_weights")
REF_CONV = (128, 256)  # channels in = out, resolution of the reference 3x3 convolution


def forward_gflop(cfg) -> float:
    """Multiply-adds x 2 of the synthesis convolutions (3x3 layers and torgb), in GFLOP."""
    flop = 0.0
    for res in cfg.block_resolutions:
        out_c = cfg.channels(res)
        if res == 4:
            flop += 2 * out_c * out_c * 9 * res * res
        else:
            in_c = cfg.channels(res // 2)
            flop += 2 * in_c * out_c * 9 * (res // 2) ** 2  # the transposed up-sampling conv
            flop += 2 * out_c * out_c * 9 * res * res
        flop += 2 * out_c * cfg.img_channels * res * res
    return flop / 1e9


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


def _step(G, gen, ws, mode: str):
    """One call of `mode` on `gen` (which shares G's parameters)."""
    import torch

    def forward():
        G.synthesis.requires_grad_(False)
        with torch.no_grad():
            gen.synthesis(ws, noise_mode="const")

    def backward_w():
        G.synthesis.requires_grad_(False)
        w = ws.detach().requires_grad_(True)
        gen.synthesis(w, noise_mode="const").square().mean().backward()

    def backward_weights():
        G.synthesis.requires_grad_(True)
        gen.synthesis(ws, noise_mode="const").square().mean().backward()
        G.zero_grad(set_to_none=True)
        G.synthesis.requires_grad_(False)

    return {"forward": forward, "backward_w": backward_w, "backward_weights": backward_weights}[mode]


def _ref_conv(device):
    import torch
    import torch.nn.functional as F

    c, r = REF_CONV
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    x = torch.randn(1, c, r, r, device=device).contiguous(memory_format=fmt)
    w = torch.randn(c, c, 3, 3, device=device).contiguous(memory_format=fmt)

    def conv():
        with torch.no_grad():
            F.conv2d(x, w, padding=1)

    return conv, 2 * c * c * 9 * r * r / 1e9


def _sync(device):
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _time(res: int, modes: list, device_name: str, repeats: int, threads: int, plain: bool, queue) -> None:
    from timing import interleaved_wall_cpu, machine, summary

    G, gens, ws, device = _setup(res, device_name, threads)
    sync = _sync(device)
    conv, conv_gflop = _ref_conv(device)
    fns = {"conv3x3": conv}
    for mode in modes:
        fns[f"fast/{mode}"] = _step(G, G, ws, mode)
        if plain:
            fns[f"plain/{mode}"] = _step(G, gens["plain"], ws, mode)
    wall, cpu = interleaved_wall_cpu(fns, repeats, warmup=1, sync=sync)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    gflop = forward_gflop(G.config)
    out = {"model": f"ffhq-{res}", "machine": machine(device), "forward_gflop": round(gflop, 1)}
    out["conv3x3"] = {
        "shape": f"1x{REF_CONV[0]}x{REF_CONV[1]}x{REF_CONV[1]}, {REF_CONV[0]} out",
        "ms_median": round(1000 * med["conv3x3"], 1),
        "gflops": round(conv_gflop / med["conv3x3"], 1),
    }
    for path in ("fast", "plain") if plain else ("fast",):
        rows = {}
        base = f"{path}/forward"
        for mode in modes:
            key = f"{path}/{mode}"
            rows[mode] = summary(wall[key])
            if base in med:
                rows[mode]["over_forward"] = round(med[key] / med[base], 2)
                rows[mode]["over_forward_cpu_time"] = round(med_cpu[key] / med_cpu[base], 2)
        if base in med:
            rows["forward"]["gflops"] = round(gflop / med[base], 1)
            rows["forward"]["share_of_conv3x3"] = round(gflop / med[base] / (conv_gflop / med["conv3x3"]), 2)
        out[path] = rows
    if plain:
        out["plain_over_fast"] = {m: round(med[f"plain/{m}"] / med[f"fast/{m}"], 2) for m in modes}
    out["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    queue.put(out)


def _memory(res: int, mode: str, device_name: str, threads: int, queue) -> None:
    from timing import peak_memory_above_setup

    G, _, ws, device = _setup(res, device_name, threads)
    queue.put(peak_memory_above_setup(_step(G, G, ws, mode), device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--plain", action="store_true", help="also time the plain reference path")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-mode peak-memory runs")
    args = ap.parse_args()
    results = []
    for res in args.res:
        row = run_isolated(_time, res, args.modes, args.device, args.repeats, args.threads, args.plain)
        if not args.no_memory:
            for mode in args.modes:
                row["fast"][mode].update(run_isolated(_memory, res, mode, args.device, args.threads))
        results.append(row)
    print(
        json.dumps(
            {
                "benchmark": "generator",
                "batch": 1,
                "noise_mode": "const",
                "repeats": args.repeats,
                "note": "over_forward = median mode time / median forward time (wall, and process CPU time), "
                "same process, interleaved; share_of_conv3x3 = forward GFLOP/s / same-run 3x3 conv GFLOP/s",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
