"""PTI steady-state timing: seconds per projection step and per tuning step, fast vs plain generator.

Prints one JSON object.  Per resolution, one child process builds the generator (random
weights with the real FFHQ config; speed does not depend on the values) and both LPIPS
networks (the real AlexNet / VGG16 architectures with random backbone weights, because the
ImageNet weights cannot be downloaded here; speed does not depend on them either) and
times that setup separately.  Then short projection and tuning runs alternate between the
fast generator and the plain reference generator (weights/reference.py) on the same
weights; a step's time is the interval between consecutive step callbacks, so each run's
first step (warm-up, w statistics, generator copy) is never counted.  Reports medians, the
plain/fast ratio, and the peak RSS of the whole child process.  A cached re-run of the
whole `invert` is timed as well (fast path).

`--tuning-lpips` times something else: one PTI tuning step with the LPIPS(alex) of the loss and the
stop rule on images area-downsampled to 256 (photodrag before issue 22) against full resolution
(PTI, and photodrag's default now), interleaved in one process on the same generator.

    python benchmarks/inversion.py [--res 256 512] [--steps 3] [--rounds 2] [--device cpu|cuda|auto]
    python benchmarks/inversion.py --tuning-lpips [--res 512] [--steps 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated


def _step_times(run, clock=time.perf_counter) -> list:
    """Run `run(callback)` and return the intervals between consecutive callbacks (seconds of `clock`)."""
    stamps = []
    run(lambda step, metrics: stamps.append(clock()))
    return [b - a for a, b in zip(stamps, stamps[1:])]  # noqa: RUF007  (itertools.pairwise needs 3.10)


def _wall_and_cpu_step_times(run) -> tuple:
    """(wall, process CPU) seconds between consecutive callbacks of one `run(callback)`."""
    stamps = []
    run(lambda step, metrics: stamps.append((time.perf_counter(), time.process_time())))
    pairs = list(zip(stamps, stamps[1:]))  # noqa: RUF007
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def _measure(res: int, steps: int, rounds: int, device_name: str, threads: int, queue) -> None:
    import tempfile

    import numpy as np
    import torch
    from timing import machine, peak_rss_mib, ratio, summary

    from common.settings import resolve_device
    from inversion.api import invert
    from inversion.cache import InversionCache
    from inversion.config import InversionConfig, ProjectionConfig, TuningConfig
    from inversion.perceptual import Perceptual
    from inversion.projector import project
    from inversion.tuning import tune
    from weights.networks import Generator
    from weights.reference import PlainGenerator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    setup = {}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False)
    state = {k: v.clone() for k, v in G.state_dict().items()}
    setup["generator_build_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    G.load_state_dict(state)
    G = G.to(device)
    setup["weights_load_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    nets = {n: Perceptual(n, random_backbone=True, resolution=256).to(device) for n in ("alex", "vgg")}
    setup["lpips_build_s"] = round(time.perf_counter() - t0, 3)

    rng = np.random.RandomState(0)
    target = torch.from_numpy(rng.rand(1, 3, res, res).astype(np.float32) * 2 - 1).to(device)
    proj_cfg = ProjectionConfig(steps=steps)
    tune_cfg = TuningConfig(steps=steps, lpips_threshold=0.0)
    with torch.no_grad():
        pivot = G.mapping(torch.randn(1, G.z_dim, device=device))
    gens = {"fast": G, "plain": PlainGenerator(G)}
    times = {f"{kind}_{path}": [] for kind in ("projection", "tuning") for path in gens}
    for r in range(rounds):
        order = list(gens) if r % 2 == 0 else list(gens)[::-1]
        for path in order:
            gen = gens[path]
            times[f"projection_{path}"] += _step_times(
                lambda cb, gen=gen: project(gen, target, proj_cfg, nets["vgg"], callback=cb)
            )
        for path in order:
            gen = gens[path]
            times[f"tuning_{path}"] += _step_times(
                lambda cb, gen=gen: tune(gen, pivot, target, tune_cfg, nets["alex"], callback=cb)
            )

    out = {
        "model": f"ffhq-{res}",
        "machine": machine(device),
        "setup": setup,
        "steps_per_run": steps,
        "rounds": rounds,
        "timed_steps_per_path": len(times["projection_fast"]),
    }
    for kind in ("projection", "tuning"):
        fast, plain = times[f"{kind}_fast"], times[f"{kind}_plain"]
        out[kind] = {
            "fast_s_per_step": round(summary(fast)["ms_median"] / 1000, 3),
            "plain_s_per_step": round(summary(plain)["ms_median"] / 1000, 3),
            "plain_over_fast": ratio(plain, fast),
        }

    img = (rng.rand(res, res, 3) * 255).astype(np.uint8)
    cfg = InversionConfig(projection=ProjectionConfig(steps=2), tuning=TuningConfig(steps=2, lpips_threshold=0.0))
    with tempfile.TemporaryDirectory() as tmp:
        cache = InversionCache(Path(tmp))
        run = lambda: invert(
            img, G, cfg, perceptual=lambda n, r: nets[n], cache=cache, model_sha256="bench", progress=False
        )
        first = run()
        t0 = time.perf_counter()
        second = run()
        out["cached_rerun_s"] = round(time.perf_counter() - t0, 3)
        assert second.cache_hit and not first.cache_hit
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    if device.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    queue.put(out)


def _measure_tuning_lpips(res: int, steps: int, rounds: int, device_name: str, threads: int, queue) -> None:
    """Seconds per tuning step at `res`: LPIPS(alex) downsampled to 256 vs at full resolution."""
    from dataclasses import replace

    import numpy as np
    import torch
    from timing import interleaved, machine, ratio, summary

    from common.settings import resolve_device
    from inversion.config import TuningConfig
    from inversion.perceptual import Perceptual
    from inversion.tuning import tune
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    torch.manual_seed(0)
    G = Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs).eval().requires_grad_(False).to(device)
    torch.manual_seed(1)
    alex = Perceptual("alex", random_backbone=True).to(device)
    nets = {"downsampled_256": copy.deepcopy(alex), "full_resolution": alex}
    nets["downsampled_256"].resolution = 256
    rng = np.random.RandomState(0)
    target = torch.from_numpy(rng.rand(1, 3, res, res).astype(np.float32) * 2 - 1).to(device)
    with torch.no_grad():
        pivot = G.mapping(torch.randn(1, G.z_dim, device=device))
    cfg = TuningConfig(steps=steps, lpips_threshold=0.0)
    at_start = machine(device)  # its load average is the one before the timed runs
    for net in nets.values():  # warm-up, untimed: the first runs in a process pay for allocations
        tune(G, pivot, target, replace(cfg, steps=2), net)
    times = {name: [] for name in nets}
    cpu = {name: [] for name in nets}
    for r in range(rounds):
        for name in list(nets) if r % 2 == 0 else list(nets)[::-1]:
            wall, used = _wall_and_cpu_step_times(
                lambda cb, net=nets[name]: tune(G, pivot, target, cfg, net, callback=cb)
            )
            times[name] += wall
            cpu[name] += used
    before, after = times["downsampled_256"], times["full_resolution"]
    # the part that differs, alone: LPIPS forward + backward to a generated-size image (many short repeats)
    img = target.clone().requires_grad_(True)
    feats = {name: [f.detach() for f in net.features(target)] for name, net in nets.items()}

    def lpips_step(name):
        img.grad = None
        nets[name].distance(nets[name].features(img), feats[name]).backward()

    lp = interleaved({name: (lambda name=name: lpips_step(name)) for name in nets}, repeats=4 * rounds + 2)
    queue.put(
        {
            "model": f"ffhq-{res}",
            "machine": at_start,
            "steps_per_run": steps,
            "rounds": rounds,
            "timed_steps_per_variant": len(before),
            "tuning_s_per_step": {
                "before_lpips_downsampled_256": round(summary(before)["ms_median"] / 1000, 3),
                "after_lpips_full_resolution": round(summary(after)["ms_median"] / 1000, 3),
            },
            "min_s_per_step": {
                "before_lpips_downsampled_256": round(summary(before)["ms_min"] / 1000, 3),
                "after_lpips_full_resolution": round(summary(after)["ms_min"] / 1000, 3),
            },
            "after_over_before": ratio(after, before),
            # CPU seconds of this process per step: less moved by other processes sharing the cores
            "tuning_cpu_s_per_step": {
                "before_lpips_downsampled_256": round(summary(cpu["downsampled_256"])["ms_median"] / 1000, 3),
                "after_lpips_full_resolution": round(summary(cpu["full_resolution"])["ms_median"] / 1000, 3),
            },
            "cpu_after_over_before": ratio(cpu["full_resolution"], cpu["downsampled_256"]),
            "lpips_forward_backward_s": {
                "before_downsampled_256": round(summary(lp["downsampled_256"])["ms_median"] / 1000, 3),
                "after_full_resolution": round(summary(lp["full_resolution"])["ms_median"] / 1000, 3),
                "repeats": len(lp["full_resolution"]),
            },
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=None, help="[default: 256 512; 512 with --tuning-lpips]")
    ap.add_argument("--steps", type=int, default=3, help="steps per run (the first is never timed)")
    ap.add_argument("--rounds", type=int, default=2, help="fast/plain alternations")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--tuning-lpips",
        action="store_true",
        help="time tuning steps with LPIPS downsampled to 256 against full resolution (issue 22)",
    )
    args = ap.parse_args()
    if args.tuning_lpips:
        results = [
            run_isolated(_measure_tuning_lpips, res, args.steps, args.rounds, args.device, args.threads)
            for res in args.res or [512]
        ]
        note = (
            "one PTI tuning step (generator forward + backward + LPIPS(alex) + L2 + Adam); LPIPS backbone with "
            "random weights (real AlexNet architecture); medians of step intervals, variants alternating in one process"
        )
        print(json.dumps({"benchmark": "inversion-tuning-lpips", "note": note, "results": results}, indent=2))
        return
    resolutions = args.res or [256, 512]
    results = [run_isolated(_measure, res, args.steps, args.rounds, args.device, args.threads) for res in resolutions]
    print(
        json.dumps(
            {
                "benchmark": "inversion",
                "note": "LPIPS backbones have random weights (real AlexNet/VGG16 architectures); "
                "plain_over_fast = median plain step / median fast step, same process, alternating runs",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
