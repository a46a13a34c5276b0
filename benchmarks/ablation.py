"""What each generator optimisation is worth: the fast path with one choice switched back, as ratios.

For each mode (forward, backward_w, backward_weights; batch 1, CPU or CUDA) the fast path
is timed interleaved in one process against variants that undo one choice each:
  contiguous     NCHW tensors instead of channels-last;
  fold_styles    styles always scale the weights (NVIDIA's fused_modconv=True form);
  scale_input    styles always scale the activations (NVIDIA's fused_modconv=False form);
  compiled       torch.compile of the synthesis network (only with --compile; skipped
                 silently where no compiler works).
A ratio above 1 means the variant is slower than the fast path.  The variants are made
by wrapping the library functions inside this process only.  Prints one JSON object.

    python benchmarks/ablation.py [--res 256] [--repeats 5] [--modes ...] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated

MODES = ("forward", "backward_w", "backward_weights")


@contextlib.contextmanager
def _variant(name: str):
    """Switch one choice of the fast path for the duration of the block."""
    import torch

    from weights import networks, ops

    saved = (networks.modulated_conv2d, networks.SynthesisBlock.memory_format_for)
    if name == "contiguous":
        networks.SynthesisBlock.memory_format_for = staticmethod(lambda device, dtype: torch.contiguous_format)
    elif name in ("fold_styles", "scale_input"):
        fold = name == "fold_styles"

        def conv(x, *args, **kwargs):
            return ops.modulated_conv2d(x, *args, fold_styles=fold and x.shape[0] == 1, **kwargs)

        networks.modulated_conv2d = conv
    try:
        yield
    finally:
        networks.modulated_conv2d, memory_format_for = saved
        networks.SynthesisBlock.memory_format_for = staticmethod(memory_format_for)


def _measure(res: int, modes: list, repeats: int, device_name: str, threads: int, compile_: bool, queue) -> None:
    import torch
    from timing import interleaved, machine, ratio, summary

    from common.settings import resolve_device
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    torch.manual_seed(0)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, device=device))
    synth = {"fast": G.synthesis}
    compile_status = "not asked (--compile)"
    if compile_:
        try:
            compiled = torch.compile(G.synthesis)
            with torch.no_grad():
                compiled(ws)
            synth["compiled"] = compiled
            compile_status = "compiled"
        except Exception as exc:  # noqa: BLE001  (opt-in: any compiler failure just drops the variant)
            compile_status = f"skipped: {type(exc).__name__}"
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def call(fn, mode, variant):
        def run():
            with _variant(variant):
                if mode == "forward":
                    with torch.no_grad():
                        fn(ws)
                elif mode == "backward_w":
                    w = ws.detach().requires_grad_(True)
                    fn(w).square().mean().backward()
                else:
                    fn(ws).square().mean().backward()
                    G.zero_grad(set_to_none=True)

        return run

    out = {"model": f"ffhq-{res}", "machine": machine(device)}
    for mode in modes:
        G.synthesis.requires_grad_(mode == "backward_weights")
        fns = {v: call(G.synthesis, mode, v) for v in ("fast", "contiguous", "fold_styles", "scale_input")}
        if "compiled" in synth:
            fns["compiled"] = call(synth["compiled"], mode, "fast")
        t = interleaved(fns, repeats, warmup=1, sync=sync)
        out[mode] = {
            "fast": summary(t["fast"]),
            **{f"{v}_over_fast": ratio(t[v], t["fast"]) for v in fns if v != "fast"},
        }
    out["torch_compile"] = compile_status
    queue.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (opt-in)")
    args = ap.parse_args()
    results = [
        run_isolated(_measure, res, args.modes, args.repeats, args.device, args.threads, args.compile)
        for res in args.res
    ]
    print(
        json.dumps(
            {
                "benchmark": "generator ablation",
                "note": "x_over_fast = median time of variant x / median time of the fast path, "
                "same process, interleaved",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
