"""A whole first `edit`: wall time and peak RSS of each of the four stages, at 256 and 512.

Each stage runs through its public run function (`run_align`, `run_invert`, `run_drag`,
`run_composite`), in sequence on one run folder, each in a fresh child process, so each
stage's peak RSS is its own (the RSS after the child's imports and inputs are loaded is
reported beside it).  The stages get their dependencies as parameters: the generator (the
real FFHQ config with random weights) and random-backbone LPIPS networks (ImageNet
backbones cannot be downloaded here; speed does not depend on the values).  The schedule
is PTI's default (450 projection steps, 350 tuning steps with the LPIPS stop off so every
step runs, 300 drag steps).  `--steps-scale F` runs that fraction of every step count and
also prints each stage's time extrapolated linearly to the full schedule (labelled as
such: fixed costs are scaled too, so it over-estimates a little).  CPU only.  Prints one
JSON object.

    python benchmarks/pipeline.py [--res 256 512] [--steps-scale 1.0] [--photo PHOTO]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isolated import run_isolated
from timing import peak_rss_mib, random_perceptual, rss_mib

FULL = {"projection": 450, "tuning": 350, "drag": 300}
HANDLE, TARGET = (371, 569), (390, 550)  # a mouth corner of the default photo, dragged up and out


def _recipe(model: Path, steps: dict):
    from pipeline.recipe import parse_recipe

    return parse_recipe(
        {
            "model": str(model),
            "drags": [{"handle": list(HANDLE), "target": list(TARGET)}],
            "invert": {
                "projection_steps": steps["projection"],
                "tuning_steps": steps["tuning"],
                "lpips_threshold": 0.0,
            },
            "drag": {"steps": steps["drag"]},
        }
    )


def _stage(name: str, res: int, photo: Path, run_dir: Path, model: Path, steps: dict, threads: int, queue) -> None:
    """Run one stage in this (child) process and report its seconds and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe = _recipe(model, steps)
    if name == "align":
        from align.stage import run_align

        ready = rss_mib()
        t0 = time.perf_counter()
        run_align(photo, run_dir, size=res)
    elif name == "invert":
        from inversion.stage import run_invert
        from weights.checkpoint import load_generator

        G = load_generator(model)
        perceptual = random_perceptual()
        ready = rss_mib()
        t0 = time.perf_counter()
        run_invert(
            run_dir, G, f"ffhq-{res} random", "0" * 64, recipe.inversion_config(), perceptual, None, progress=False
        )
    elif name == "drag":
        from align.record import AlignRecord
        from common.images import load_photo
        from drag.points import DragPair, map_to_aligned
        from drag.record import DragRecord
        from drag.stage import run_drag

        align = AlignRecord.load(run_dir)
        pts, mask = map_to_aligned(
            [DragPair(HANDLE, TARGET)],
            recipe.coords,
            align.matrix,
            res,
            load_photo(photo).size,
            recipe.mask_circle,
            recipe.mask_path,
            landmarks=align.aligned_landmarks if align.has_landmarks else None,
        )
        ready = rss_mib()
        t0 = time.perf_counter()
        run_drag(run_dir, pts, mask, recipe.drag_config(), progress=False)
    else:
        from pipeline.composite import run_composite

        ready = rss_mib()
        t0 = time.perf_counter()
        run_composite(run_dir, run_dir.parent / "edited.jpg")
    seconds = time.perf_counter() - t0
    report = {"s": round(seconds, 2), "peak_rss_mib": round(peak_rss_mib(), 1), "rss_mib_before_stage": round(ready, 1)}
    if name == "drag":  # read after the clock stops: the record's I/O is not the stage's time
        record = DragRecord.load(run_dir)
        report.update(steps=record.steps, stop_reason=record.stop_reason)
    queue.put(report)


def _model(res: int, path: Path, queue) -> None:
    import torch

    from weights.checkpoint import save_generator
    from weights.networks import Generator
    from weights.registry import REGISTRY

    torch.manual_seed(0)
    save_generator(Generator(**REGISTRY[f"ffhq-{res}"].init_kwargs), path)
    queue.put(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512], choices=[256, 512, 1024])
    ap.add_argument("--steps-scale", type=float, default=1.0, help="fraction of the default step counts to run")
    ap.add_argument(
        "--photo",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "photos" / "Tom_Cruise_avp_2014_4.jpg",
    )
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    if not args.photo.exists():
        print(json.dumps({"benchmark": "pipeline", "error": f"photo not found: {args.photo}"}))
        sys.exit(1)
    if not 0 < args.steps_scale <= 1:
        print(json.dumps({"benchmark": "pipeline", "error": "--steps-scale must be in (0, 1]"}))
        sys.exit(2)
    steps = {k: max(1, round(v * args.steps_scale)) for k, v in FULL.items()}
    results = []
    for res in args.res:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            model = Path(run_isolated(_model, res, tmp / f"ffhq{res}-random.safetensors"))
            row: dict = {"model": f"ffhq-{res} config, random weights", "stages": {}}
            for stage in ("align", "invert", "drag", "composite"):
                got = run_isolated(_stage, stage, res, args.photo, tmp / "run", model, steps, args.threads)
                if stage in ("invert", "drag") and args.steps_scale < 1:
                    got["s_extrapolated_to_full_schedule"] = round(got["s"] / args.steps_scale, 1)
                row["stages"][stage] = got
            row["total_s"] = round(sum(s["s"] for s in row["stages"].values()), 2)
            row["load_avg"] = [round(v, 2) for v in os.getloadavg()]
            results.append(row)
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "device": "cpu",
                "threads": args.threads,
                "photo": args.photo.name,
                "steps_scale": args.steps_scale,
                "steps_ran": steps,
                "steps_full_schedule": FULL,
                "note": "each stage in its own process through its public run function; peak_rss_mib is that "
                "process's peak; s_extrapolated_to_full_schedule = s / steps_scale (linear, an estimate)",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
