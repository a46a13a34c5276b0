"""Same-process comparisons: the machine's description, interleaved timing, peak memory.

Absolute times on the machines this project runs on vary 3-4x between machines and with
other load, so every benchmark times the fast path against the plain path in one process,
alternating them (ABBA order, after warm-up) and reporting medians and their ratio.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable


def machine(device) -> dict:
    """CPU model, cores and threads in use, torch version and the device (GPU name on CUDA)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    try:
        out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Seconds per call of each function, timed alternately: A B B A A B ... after `warmup` calls each."""
    return interleaved_wall_cpu(fns, repeats, warmup, sync)[0]


def interleaved_wall_cpu(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, sync: Callable[[], None] = lambda: None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """As `interleaved`, and the process CPU seconds of each call beside the wall seconds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def summary(times: list[float]) -> dict:
    """Median and min in milliseconds."""
    return {"ms_median": round(1000 * statistics.median(times), 1), "ms_min": round(1000 * min(times), 1)}


def ratio(plain: list[float], fast: list[float]) -> float:
    """How many times faster `fast` is than `plain` (ratio of medians)."""
    return round(statistics.median(plain) / statistics.median(fast), 2)


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_above_setup(fn: Callable[[], object], device) -> dict:
    """Run `fn` twice and report the peak memory above the level before it: GPU memory on CUDA, else RSS."""
    import torch

    base = rss_mib()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    fn()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return {"peak_gpu_mib_above_setup": round((torch.cuda.max_memory_allocated(device) - start) / 2**20, 1)}
    return {"peak_rss_mib_above_setup": round(peak_rss_mib() - base, 1)}


def random_perceptual(device=None) -> Callable[[str, object], object]:
    """A `perceptual(net, resolution)` builder for the stages: LPIPS with random backbones (ImageNet
    weights cannot be downloaded here; speed does not depend on the values), one per (net, resolution)."""
    from inversion.perceptual import Perceptual

    nets: dict = {}

    def perceptual(net: str, resolution=None):
        if (net, resolution) not in nets:
            lp = Perceptual(net, random_backbone=True, resolution=resolution)
            nets[net, resolution] = lp if device is None else lp.to(device)
        return nets[net, resolution]

    return perceptual
