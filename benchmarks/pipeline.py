"""Whole `edit` timing: seconds and peak RSS per stage, first run and a re-edit with other points.

Prints one JSON object.  Real architecture at 256 (random weights: the ffhq-256 config),
random-backbone LPIPS (ImageNet backbones cannot be downloaded here; speed does not depend
on the values), CPU.  The first run does every stage; the re-edit uses other points, so
align and invert are reused and only drag and composite run.

    python benchmarks/pipeline.py [--photo PHOTO] [--projection-steps 450] [--tuning-steps 350]
                                  [--drag-steps 300]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--photo",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "photos" / "Tom_Cruise_avp_2014_4.jpg",
    )
    ap.add_argument("--projection-steps", type=int, default=450)
    ap.add_argument("--tuning-steps", type=int, default=350)
    ap.add_argument("--drag-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    if not args.photo.exists():
        print(json.dumps({"benchmark": "pipeline", "error": f"photo not found: {args.photo}"}))
        return
    import torch

    import inversion.perceptual as perceptual
    import pipeline.edit as edit
    from drag.record import DragRecord
    from inversion.cache import InversionCache
    from pipeline.recipe import parse_recipe
    from weights.checkpoint import save_generator
    from weights.networks import Generator
    from weights.registry import REGISTRY
    from weights.store import WeightStore

    torch.set_num_threads(args.threads)
    nets = {n: perceptual.Perceptual(n, random_backbone=True, resolution=256) for n in ("alex", "vgg")}
    perceptual.load_perceptual = lambda net, store, r=None, fetch=True: nets[net]

    rss = []

    def stage_rss(stage_fn_name):
        mod_name, fn_name = stage_fn_name
        mod = importlib.import_module(mod_name)
        real = getattr(mod, fn_name)

        def wrapped(*a, **k):
            out = real(*a, **k)
            rss.append((fn_name, round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)))
            return out

        setattr(mod, fn_name, wrapped)

    for target in (
        ("align.stage", "run_align"),
        ("inversion.stage", "run_invert"),
        ("drag.stage", "run_drag"),
        ("pipeline.composite", "run_composite"),
    ):
        stage_rss(target)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = tmp / "ffhq256-random.safetensors"
        save_generator(Generator(**REGISTRY["ffhq-256"].init_kwargs), model)
        lm_right, lm_left = (371, 569), (168, 544)  # mouth corners of the default photo

        def recipe(handle, target):
            return parse_recipe(
                {
                    "model": str(model),
                    "drags": [{"handle": list(handle), "target": list(target)}],
                    "invert": {
                        "projection_steps": args.projection_steps,
                        "tuning_steps": args.tuning_steps,
                        "lpips_threshold": 0.0,
                    },
                    "drag": {"steps": args.drag_steps},
                }
            )

        common = dict(
            home=tmp,
            device=torch.device("cpu"),
            store=WeightStore(tmp),
            progress=False,
            cache=InversionCache(tmp / "cache"),
            run_dir=tmp / "run",
        )
        runs = {}
        for label, (h, t) in (("first", (lm_right, (390, 550))), ("re_edit", (lm_left, (150, 530)))):
            rss.clear()
            t0 = time.perf_counter()
            s = edit.run_edit(args.photo, recipe(h, t), tmp / f"{label}.jpg", **common)
            drag = DragRecord.load(tmp / "run")
            runs[label] = {
                "total_s": round(time.perf_counter() - t0, 2),
                "stage_s": s.seconds,
                "reused": s.reused,
                "peak_rss_mib_after_stage": dict(rss),
                "drag_steps": drag.steps,
                "drag_stop_reason": drag.stop_reason,
            }
    ratio = runs["re_edit"]["total_s"] / runs["first"]["total_s"]
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "model": "ffhq-256 config, random weights",
                "device": "cpu",
                "threads": args.threads,
                "photo": args.photo.name,
                "steps": {
                    "projection": args.projection_steps,
                    "tuning": args.tuning_steps,
                    "drag": args.drag_steps,
                    "note": "tuning runs all steps (threshold 0)",
                },
                "runs": runs,
                "re_edit_over_first": round(ratio, 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
